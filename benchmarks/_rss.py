"""Resident memory of this process (Linux ``/proc/self/statm``) and a sampler of its peak.

``tracemalloc`` sees only Python's and NumPy's own allocations; the resident set also holds
the buffers that C code (SciPy, scikit-image, TensorFlow) allocates, so the benchmarks
report RSS growth, sampled in a thread while the measured call runs.
"""

from __future__ import annotations

import os
import threading


def rss_bytes() -> int:
    """This process' resident set size in bytes."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class RssPeak:
    """Samples the RSS every ``interval`` s in a thread while in the block; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak = interval, rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
