"""Admission: the bounds on waiting work, and the estimate of the work ahead that refuses a request
which could not start within the queue-time bound (or its own deadline) before it waits at all.

Every admitted request holds its share of the bounds until its work really ends (a pre-stage unit
still running for an abandoned request keeps holding it), so that abandoned work cannot let more
work in than the machine can do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from reranker.errors import CapacityError, DeadlineError

EWMA = 0.2
"""Weight of the newest observation in the running per-unit costs and the calibration."""
MIN_CALIBRATION_S = 0.01
"""Answers expected sooner than this do not calibrate (their time is mostly fixed overhead)."""
MIN_SCALE, MAX_SCALE = 0.5, 20.0
"""Bounds of the calibration factor."""


@dataclass(eq=False)
class Watch:
    """One request's deadline and cancellation, checked by every stage before its next unit of work
    (a chunk of passages to encode, a batch)."""

    deadline: float | None
    """``time.monotonic()`` instant; None = none."""
    cancelled: bool = False
    """The caller went away (set on the event loop, read by worker threads)."""

    def abandoned(self) -> bool:
        return self.cancelled or (self.deadline is not None and time.monotonic() >= self.deadline)

    def check(self) -> None:
        """:class:`DeadlineError` when the caller's deadline passed or it cancelled."""
        if self.cancelled:
            raise DeadlineError("the caller cancelled the request; its remaining work was dropped")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineError("the deadline passed before the request's work was done; the rest was dropped")


@dataclass
class UnitCosts:
    """Running (exponentially weighted) seconds per unit of one model's work."""

    pair_s: float = 0.0
    """Core stage: seconds of batch time per scored pair."""
    encode_s: float = 0.0
    """Pre stage: seconds per passage encoded from its text."""

    def observe_pairs(self, pairs: int, seconds: float) -> None:
        if pairs > 0:
            self.pair_s = _ewma(self.pair_s, seconds / pairs)

    def observe_encodes(self, encodes: int, seconds: float) -> None:
        if encodes > 0:
            self.encode_s = _ewma(self.encode_s, seconds / encodes)

    def estimate(self, pairs: int, encodes: int) -> float:
        """Seconds of work of a request with ``pairs`` pairs of which ``encodes`` need encoding."""
        return pairs * self.pair_s + encodes * self.encode_s


def _ewma(old: float, new: float) -> float:
    return new if old == 0.0 else (1.0 - EWMA) * old + EWMA * new


@dataclass(eq=False)
class Stake:
    """What one admitted request holds until its work ends."""

    seconds: float
    encodes: int
    expected: float
    """Estimated seconds from admission to the answer (work ahead plus its own), before scaling."""
    admitted: float = field(default_factory=time.monotonic)
    prepared: bool = False
    finished: bool = False
    released: bool = False


class Admission:
    """The engine's bounds: requests and passages waiting for the pre stage, and queue time."""

    def __init__(self, max_pending_requests: int, max_pending_encodes: int, max_queue_s: float) -> None:
        self.max_pending_requests, self.max_pending_encodes = max_pending_requests, max_pending_encodes
        self.max_queue_s = max_queue_s
        self.pending = 0
        """Requests admitted whose pre stage has not ended."""
        self.pending_encodes = 0
        """Passages admitted for encoding whose encoding has not ended."""
        self.ahead_s = 0.0
        """Estimated seconds of admitted work not yet ended (the queue a new request waits behind)."""
        self.outstanding = 0
        """Admitted requests whose stake is not yet released; at 0 :attr:`ahead_s` is exactly 0 (sums
        and differences of floats would otherwise leave a residue that looks like work ahead)."""
        self.scale = 1.0
        """Running ratio of the answer times seen to the ones estimated: the per-unit costs are learnt
        from the work alone, this calibrates them to everything else on the machine (other work,
        scheduling, the event loop), so that the bound holds in wall-clock time."""

    def check(self, deadline: float | None) -> None:
        """CapacityError when a request would be refused whatever its own work: what is ahead alone
        exceeds a bound. Called before a request's own estimate is computed, so that a refusal under
        overload costs no per-candidate work (:meth:`admit` checks again with its own work)."""
        self._refuse_ahead(0, 0.0, deadline)

    def admit(self, seconds: float, encodes: int, deadline: float | None) -> Stake:
        """Admit a request of ``seconds`` estimated work, or refuse it at once with CapacityError. With
        nothing ahead a request is always admitted (its own deadline then stops it if it must)."""
        self._refuse_ahead(encodes, seconds, deadline)
        self.pending += 1
        self.pending_encodes += encodes
        stake = Stake(seconds, encodes, self.ahead_s + seconds)
        self.ahead_s += seconds
        self.outstanding += 1
        return stake

    def _refuse_ahead(self, encodes: int, seconds: float, deadline: float | None) -> None:
        if self.pending >= self.max_pending_requests or (
            encodes and self.pending_encodes and self.pending_encodes + encodes > self.max_pending_encodes
        ):
            raise CapacityError(
                f"server over capacity: {self.pending} requests with {self.pending_encodes} passages "
                f"to encode are waiting to be prepared (at most {self.max_pending_requests} requests "
                f"and {self.max_pending_encodes} passages); retry later"
            )
        wait, own = self.ahead_s * self.scale, seconds * self.scale
        if self.max_queue_s and wait > self.max_queue_s:
            raise CapacityError(
                f"server over capacity: the work ahead would make this request wait about "
                f"{wait * 1000:.0f} ms, more than the bound of {self.max_queue_s * 1000:.0f} ms; "
                "retry later"
            )
        if self.max_queue_s and wait and deadline is not None and time.monotonic() + wait + own > deadline:
            raise CapacityError(
                f"server over capacity: the work ahead (about {wait * 1000:.0f} ms) and this "
                f"request's (about {own * 1000:.0f} ms) would not end before its deadline; "
                "retry later or allow more time"
            )

    def prepared(self, stake: Stake) -> None:
        """The request's pre stage has really ended (its threads returned)."""
        self.pending -= 1
        self.pending_encodes -= stake.encodes
        stake.prepared = True
        self._release(stake)

    def done(self, stake: Stake, answered: bool = False, running_s: float = 0.0, late: bool = False) -> None:
        """The request has its answer (``answered``) or error; its work ahead is released once its pre
        stage ended too, except that an abandoned request whose pre stage still runs keeps only
        ``running_s`` (the unit its thread is in) in the estimate: the rest is never done, so a
        request right after it is not refused for it. An answer calibrates :attr:`scale`; so does a
        request abandoned at its deadline (``late``) whose time already exceeds the scaled estimate
        (a lower bound of its true time: leaving the late ones out would keep only the requests that
        were fast enough, and the estimate would stay optimistic)."""
        stake.finished = True
        if not stake.prepared and stake.seconds > running_s:
            self.ahead_s = max(0.0, self.ahead_s - (stake.seconds - max(running_s, 0.0)))
            stake.seconds = max(running_s, 0.0)
        if (answered or late) and stake.expected >= MIN_CALIBRATION_S:
            seen = (time.monotonic() - stake.admitted) / stake.expected
            if late:  # a lower bound: it may raise the scale, by at most a step towards twice it
                seen = min(seen, 2.0 * self.scale) if seen > self.scale else 0.0
            if seen:
                self.scale = min(MAX_SCALE, max(MIN_SCALE, (1.0 - EWMA) * self.scale + EWMA * seen))
        self._release(stake)

    def _release(self, stake: Stake) -> None:
        if stake.prepared and stake.finished and not stake.released:
            stake.released = True
            self.outstanding -= 1
            self.ahead_s = max(0.0, self.ahead_s - stake.seconds) if self.outstanding else 0.0
