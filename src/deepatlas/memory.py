"""Process memory, measured: resident size now, peak per stage, and what the machine has free.

Linux keeps a process's peak resident size (``VmHWM`` in ``/proc/self/status``) and lets the
process reset it (``echo 5 > /proc/self/clear_refs``), so a stage's own peak is read exactly:
reset, run the stage, read ``VmHWM``. Where that is not allowed, a thread samples ``VmRSS``
every 20 ms instead (a short spike between samples can then be missed). Elsewhere (no
``/proc``) everything reads 0 and budgets are not enforced. Imports nothing heavy.

Examples
--------
>>> meter = StageMeter()
>>> with meter.stage("allocate"):
...     block = bytearray(64 << 20)
>>> meter.peaks["allocate"] >= 64 or not Path("/proc/self/status").exists()
True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["StageMeter", "available_mb", "peak_mb", "reset_peak", "rss_mb"]

_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    return _status_mb("VmRSS:")


def peak_mb() -> float:
    """Peak resident set size since the process started or :func:`reset_peak`, in MiB."""
    return _status_mb("VmHWM:")


def reset_peak() -> bool:
    """Set the peak to the current size; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def available_mb() -> float:
    """Memory a new allocation can get without swapping: MemAvailable, or less when a cgroup
    limit is lower (containers). 0 when unknown."""
    avail = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) / 1024.0
    except OSError:
        return 0.0
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit.isdigit() and used.isdigit():
            avail = min(avail, (int(limit) - int(used)) / 2**20)
    except OSError:
        pass
    return avail


class StageMeter:
    """Peak resident size per named stage, in MiB (``peaks``), and the size before the first one
    (``baseline``)."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.baseline = rss_mb()
        self._exact = reset_peak()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the peak of the block; a stage met again keeps its larger peak."""
        if self._exact and reset_peak():
            try:
                yield
            finally:
                self.peaks[name] = max(self.peaks.get(name, 0.0), peak_mb())
            return
        top = [rss_mb()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                top[0] = max(top[0], rss_mb())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            self.peaks[name] = max(self.peaks.get(name, 0.0), top[0], rss_mb())

    @property
    def peak(self) -> float:
        return max(self.peaks.values(), default=self.baseline)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.peaks.items()}
