"""Thread priorities: the engine's heavy work runs below the event loop that admits and refuses."""

from __future__ import annotations

import contextlib
import os
import sys
import threading


def lower_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (Linux: nice is per thread, and threads
    the caller starts later inherit it). Nothing elsewhere, for 0, or where the system refuses."""
    if increment and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()  # Linux: the thread, not the process
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + increment)
