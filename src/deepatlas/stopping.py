"""How long a stop request (SIGTERM) waits for the process to wind down.

The CLI's SIGTERM handler raises :class:`KeyboardInterrupt` in the main thread, which Python
delivers only when the running native call returns; a stage inside one long matrix product or a
blocked read can hold it for minutes. So the handler also starts a deadline
(:data:`STOP_GRACE_S`, ``$DEEPATLAS_TERM_GRACE``): if the exception has not reached a clean-up
by then, the process exits 143. A clean-up that has begun (removing a half-written run) calls
:func:`cleanup_begins`, which moves the deadline to :data:`CLEANUP_GRACE_S` from then: it is
doing what the stop asked for. A second SIGTERM exits at once.
"""

from __future__ import annotations

import os
import sys
import threading

__all__ = ["CLEANUP_GRACE_S", "STOP_GRACE_S", "cleanup_begins", "start_deadline"]

STOP_GRACE_S = 20.0
CLEANUP_GRACE_S = 300.0
_timer: threading.Timer | None = None


def _exit(grace: float) -> None:
    sys.stderr.write(f"stopped (SIGTERM): still running {grace:g} s after the request; exiting now. A run being written "
                     "stays incomplete (never listed as complete; the next ingest of its name clears it); a resumable "
                     "ingest continues from its last checkpoint with --resume\n")
    sys.stderr.flush()
    os._exit(143)


def _arm(grace: float) -> None:
    global _timer
    if _timer is not None:
        _timer.cancel()
    _timer = threading.Timer(grace, _exit, (grace,))
    _timer.daemon = True
    _timer.start()


def start_deadline() -> bool:
    """Arm the stop deadline; False when one is already armed (a second request: exit now)."""
    if _timer is not None:
        _exit(0)
        return False
    try:
        grace = float(os.environ.get("DEEPATLAS_TERM_GRACE", STOP_GRACE_S))
    except ValueError:
        grace = STOP_GRACE_S
    _arm(grace)
    return True


def cleanup_begins() -> None:
    """A clean-up answering the stop has started: give it :data:`CLEANUP_GRACE_S` (no-op when
    no stop was requested)."""
    if _timer is not None:
        _arm(CLEANUP_GRACE_S)
