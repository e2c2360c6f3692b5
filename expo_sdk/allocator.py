"""Keep freed memory in the process, so large temporaries stop page-faulting (CPU, glibc).

An EXPO update allocates and frees the same large temporaries over and over: the critic
scores 2N candidates with the whole ensemble ([E, B*2N, hidden] = 42 MB per activation at
the paper's sizes). glibc serves blocks that large with mmap and returns them to the kernel
on free, so every allocation touches fresh pages: measured here, 2-3x slower critic
scoring, most of it system time (page faults). Raising glibc's mmap and trim thresholds
keeps freed blocks in the heap for reuse, at the cost of a resident set that stays at its
peak. This is what LD_PRELOAD-ing jemalloc/tcmalloc achieves, done from inside the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_applied = False


def retain_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks for reuse (process-wide, idempotent).

    Returns True if the settings are in effect (Linux with glibc), False elsewhere.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs: nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Blocks up to 1 GiB come from the heap; the heap is never trimmed back.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied
