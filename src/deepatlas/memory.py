"""Process memory, measured: resident size now, peak per stage, and what the machine has free.

A stage's peak: a thread samples the resident size (``VmRSS`` in ``/proc/self/status``) every
10 ms while the stage runs, and at its end the kernel's own peak of the process (``VmHWM``) is
read: when that rose during the stage, the stage set the process's peak and its exact value is
``VmHWM``; otherwise the stage stayed below an earlier one and the samples give its peak (a
spike shorter than 10 ms can be missed there). The kernel's peak is never reset (Linux allows
it, ``clear_refs``, but then ``/usr/bin/time -v`` and every other outside measure would report
the last stage's peak as the process's). Elsewhere (no ``/proc``) everything reads 0 and
budgets are not enforced. Imports nothing heavy.

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

__all__ = ["StageMeter", "available_mb", "peak_mb", "rss_mb"]

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
    """Peak resident set size of this process so far (the kernel's VmHWM), in MiB."""
    return _status_mb("VmHWM:")


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

    def __init__(self, interval: float = 0.01) -> None:
        self.peaks: dict[str, float] = {}
        self.baseline = rss_mb()
        self.interval = interval

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Measure the peak of the block; a stage met again keeps its larger peak."""
        before = peak_mb()
        top = [rss_mb()]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(self.interval):
                top[0] = max(top[0], rss_mb())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            after = peak_mb()
            peak = after if after > before else max(top[0], rss_mb())
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak)

    @property
    def peak(self) -> float:
        return max(self.peaks.values(), default=self.baseline)

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in self.peaks.items()}
