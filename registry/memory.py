"""Keep the heap from growing under upload load (glibc malloc tuning, set at start).

glibc raises its mmap threshold each time a large mmapped block is freed, after which
1 MiB buffers come from per-thread arenas and are kept after use. A fixed threshold makes
large buffers always mmapped and returned on free; fewer arenas cap what threads hoard.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 256 * 1024, arenas: int = 2) -> bool:
    """Apply the settings; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    threshold_set = int(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) == 1
    arenas_set = int(mallopt(M_ARENA_MAX, arenas)) == 1
    return threshold_set and arenas_set
