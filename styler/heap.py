"""Memory kept between steps: glibc's allocator told not to hand freed memory back.

No torch import here: the ``styler`` command calls this before anything else, ``--help`` too.
"""

from __future__ import annotations

import ctypes
import platform


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_HEAP = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2 ** 31 - 1), (_M_TOP_PAD, 256 << 20))


def retain_freed_memory() -> bool:
    """Keep the memory a step frees for the next step, instead of handing it back to the system;
    True where that took effect (glibc), False elsewhere.

    By default glibc serves every allocation above 32 MB with its own mapping and unmaps it when
    freed, and returns the heap's free top to the system; the next step then faults every page
    back in, zero-filled. A training step frees and reallocates the same activations each time:
    at 256 px crops that was 250 000 page faults and a quarter of the step, and a fifth of the
    time of a 1024 px image (docs/performance.md, "Memory kept between steps"). Process-wide and not
    undone, so the library never calls it: the ``styler`` command does, and the cluster's
    workers; the process then keeps its peak size until it ends."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _HEAP)
