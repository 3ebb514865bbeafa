"""Returning freed heap memory to the OS: glibc's `malloc_trim`, a no-op elsewhere.

glibc keeps freed blocks below its (adaptive) mmap threshold resident for reuse. Loading frees
every dequantization temporary and quantizing frees every fp32 weight, while the largest
temporaries that follow (the output head's) are mapped fresh and cannot reuse them; trimming in
between keeps the load's peak memory near the loaded model's.
"""

from __future__ import annotations

import ctypes


def release_freed_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
