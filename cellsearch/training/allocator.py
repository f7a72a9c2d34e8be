"""How the process's C allocator keeps freed memory: for reuse, not handed back to the system.

A training step allocates and frees the same whole-sequence buffers every step (a population of
8 LSTMs at hidden 64: pre-activation gradients, per-step inputs and outputs of 4-16 MB each).
glibc's malloc returns large freed blocks to the system (``munmap``, or trimming the top of its
heap once more than 2 × its mmap threshold, at most 64 MB, lies free) and the next step touches
them anew: about 8,000-9,000 page faults per step of that population, 13-15% of its time
(``keep_freed_memory`` brings that to about 100; measured interleaved in one process, 1 and
2 threads). Solo steps at search sizes hardly notice (their buffers are ~1 MB).

``keep_freed_memory()`` raises glibc's mmap and trim thresholds so blocks up to
``MMAP_THRESHOLD`` come from the heap and up to ``TRIM_THRESHOLD`` of free heap stays mapped: the
process keeps memory at its peak instead. Elsewhere (musl, macOS, Windows) it does nothing.

It changes the whole process, so the library never calls it on a caller's behalf: the command
line does (``cellsearch.cli``), as do the processes cellsearch starts for itself (Ray trial
workers, ``training.parallelism.map_in_workers``'s pool) and the benchmark scripts. A Python
program that trains may call it once at its start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

MMAP_THRESHOLD = 256 << 20  # larger blocks (a whole corpus, say) are still mapped on their own
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_done: bool | None = None  # None: not tried yet; else what the first call returned


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (see module docstring); True if it did.
    Tried once per process; later calls return the first answer."""
    global _done
    if _done is None:
        _done = _set_thresholds()
    return _done


def _set_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # (a glibc that caps the mmap threshold lower refuses the value: mallopt returns 0)
        return libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                      TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False


__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]
