"""The batcher's queue: waiting items held by arrival and by cost, so that planning a batch visits
only the items it takes, whatever the queue's length.

Planning used to sort and scan every queued item for every batch: a request of 1,000 pairs from
each of 16 clients (16,000 queued) made each batch of 16 cost about as much Python as the model.
Here the items sit in one arrival deque (the oldest waiting item is its first live one) and in one
FIFO deque per cost (the number of distinct costs is bounded by the model's lengths, not by the
queue), with a sorted list of the costs that have waiting items. Taking an item pops it from its
cost's deque; dropping one (deadline, cancel) only marks it, and the deques shed marked items when
they reach their front: every item is visited a bounded number of times (amortised O(1) per item,
O(log costs) per item taken). Deadlines sit in a heap per request, not per item.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

QUEUED, TAKEN, DROPPED = 0, 1, 2
"""States of an item: waiting, handed to a batch, dropped uncomputed."""


@dataclass(eq=False)
class Ticket:
    """One request's stake in the queue: its deadline, whether its caller left, its items."""

    deadline: float | None
    """``time.monotonic()`` instant after which its waiting items are dropped (None: none)."""
    cancelled: bool = False
    items: list[Item] = field(default_factory=list)
    waiting: int = 0
    """Items of the request still queued."""

    def expired(self, now: float) -> bool:
        return self.cancelled or (self.deadline is not None and now >= self.deadline)


@dataclass(eq=False)
class Item(Generic[T, R]):
    payload: T
    cost: int
    ticket: Ticket
    future: asyncio.Future[R]
    enqueued: float
    """``time.monotonic()`` when the item was queued."""
    state: int = QUEUED


class PendingQueue:
    """Queued items by arrival and by cost; every operation costs O(items it returns) amortised."""

    def __init__(self) -> None:
        self._arrival: deque[Item] = deque()
        self._by_cost: dict[int, deque[Item]] = {}
        self._live: dict[int, int] = {}
        """Queued (not dropped) items per cost; a cost with none has no deque."""
        self._costs: list[int] = []
        """Sorted costs that have queued items."""
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._seq = 0
        self._waiting_tickets = 0
        self.size = 0
        """Items queued (taken and dropped ones excluded)."""

    def __len__(self) -> int:
        return self.size

    def add(self, ticket: Ticket, items: list[Item]) -> None:
        """Queue one request's items (in its order)."""
        ticket.items, ticket.waiting = items, len(items)
        self._waiting_tickets += 1
        for item in items:
            self._arrival.append(item)
            bucket = self._by_cost.get(item.cost)
            if bucket is None:
                bucket = self._by_cost[item.cost] = deque()
                self._live[item.cost] = 0
                bisect.insort(self._costs, item.cost)
            bucket.append(item)
            self._live[item.cost] += 1
        self.size += len(items)
        if ticket.deadline is not None:
            self._seq += 1
            heapq.heappush(self._deadlines, (ticket.deadline, self._seq, ticket))

    def oldest(self) -> Item:
        """The item waiting longest (the queue must not be empty)."""
        while self._arrival[0].state != QUEUED:
            self._arrival.popleft()
        return self._arrival[0]

    def max_cost(self) -> int:
        """The largest cost of a queued item (the queue must not be empty)."""
        return self._costs[-1]

    def expired(self, now: float) -> list[Item]:
        """Drop and return the queued items of requests whose deadline passed by ``now``."""
        out: list[Item] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            out += self.drop(heapq.heappop(self._deadlines)[2])
        if len(self._deadlines) > 2 * self._waiting_tickets + 64:  # finished requests' entries: rebuild
            self._deadlines = [e for e in self._deadlines if e[2].waiting]
            heapq.heapify(self._deadlines)
        return out

    def drop(self, ticket: Ticket) -> list[Item]:
        """Drop and return the still-queued items of ``ticket`` (its caller left or its deadline passed)."""
        if not ticket.waiting:
            return []
        out = [i for i in ticket.items if i.state == QUEUED]
        for item in out:
            item.state = DROPPED
            self._left(item)
        return out

    def take(self, max_items: int, max_cost: int) -> list[Item]:
        """The oldest item plus the queued items closest to it in cost: dearer ones first while the batch
        fits (``items x largest cost <= max_cost``), then cheaper ones, at most ``max_items``."""
        first = self.oldest()
        batch, top = [self._pop(first.cost)], first.cost
        hi, lo = first.cost, first.cost - 1  # next dearer cost >= hi, next cheaper cost <= lo
        while len(batch) < max_items:
            n = len(batch) + 1
            k = bisect.bisect_left(self._costs, hi)
            if k < len(self._costs) and n * max(top, self._costs[k]) <= max_cost:
                hi = self._costs[k]
                top = max(top, hi)
                batch.append(self._pop(hi))
                continue
            k = bisect.bisect_right(self._costs, lo) - 1
            if k >= 0 and n * top <= max_cost:
                lo = self._costs[k]
                batch.append(self._pop(lo))
                continue
            break
        return batch

    def _pop(self, cost: int) -> Item:
        """Take the first queued item of ``cost`` (there is one)."""
        bucket = self._by_cost[cost]
        while bucket[0].state != QUEUED:
            bucket.popleft()
        item = bucket.popleft()
        item.state = TAKEN
        self._left(item)
        return item

    def _left(self, item: Item) -> None:
        """Book-keeping of an item that stopped waiting (taken or dropped)."""
        self.size -= 1
        ticket = item.ticket
        ticket.waiting -= 1
        if not ticket.waiting:
            self._waiting_tickets -= 1
        self._live[item.cost] -= 1
        if not self._live[item.cost]:  # no queued item of this cost: forget it (and its dropped items)
            del self._live[item.cost], self._by_cost[item.cost]
            del self._costs[bisect.bisect_left(self._costs, item.cost)]
