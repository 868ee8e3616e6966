"""Give freed heap memory back to the operating system during long videos.

On glibc (Linux), a video analysed with the ONNX Runtime backend frees and allocates frame-sized and network-sized
buffers from several threads (the prefetch thread, ONNX Runtime's pool); glibc keeps the freed pages, fragmented, and
the resident memory of a 1080p video grew by 12-25 MB a minute (2026-12-02, 2-core machine; with `MALLOC_ARENA_MAX=2`
by 2.6 MB a second). `malloc_trim(0)` every two seconds kept it flat over the same run. Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: Analysed frames between two trims in a video (a trim walks the heap: well under a millisecond here).
TRIM_EVERY_FRAMES = 32


@functools.cache
def _malloc_trim():
    """glibc's `malloc_trim`, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc); whether anything could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


__all__ = ["TRIM_EVERY_FRAMES", "release_freed_memory"]
