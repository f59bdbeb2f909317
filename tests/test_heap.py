"""escrow.heap: freed heap memory goes back to the system when asked (glibc)."""

from __future__ import annotations

import numpy as np

from escrow.heap import release_free_memory


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024


def test_freed_gaps_of_the_heap_are_returned():
    """The capture loop's pattern: a large block freed raises malloc's mmap threshold, later
    blocks of the same size come from the heap, and a live block above the freed ones keeps
    them from ever being returned by free() alone."""
    np.ones(8 << 20, np.uint8)  # mapped, then freed: the threshold rises past 2 MiB blocks
    blocks = [np.ones(2 << 20, np.uint8) for _ in range(100)]  # 200 MiB on the heap
    pinned = np.ones(2 << 20, np.uint8)  # a live block above them
    del blocks
    before = _rss_mib()
    assert release_free_memory()  # glibc: the CI machine's C library
    after = _rss_mib()
    assert before - after > 150, (before, after)
    del pinned
