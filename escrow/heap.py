"""Give the C heap's freed memory back to the system, now and then.

The capture loop allocates megabytes of varying size every frame (decoded frames, MTCNN's
canvases and feature maps, crops). glibc's malloc raises its mmap threshold after such
blocks are freed, so later ones come from the heap, and the freed gaps between live blocks
are never returned: on a live camera the agent's resident memory grew about 60 MiB a
minute, with nothing held by Python (tracemalloc: 43 MB, flat). A fixed low mmap threshold
stopped the growth but cost a third of the frame rate (every tensor a fresh mapping);
`malloc_trim(0)` every few seconds keeps the memory level at no measured cost
(`benchmarks/capture.py`, live part).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
