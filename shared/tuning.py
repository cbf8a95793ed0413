"""Process tuning: the garbage collector (API and worker) and the C allocator (API), set once at startup."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

logger = logging.getLogger(__name__)

# glibc's mallopt parameter number for the mmap threshold (<malloc.h>: M_MMAP_THRESHOLD = -3).
_M_MMAP_THRESHOLD = -3
# Blocks at least this large are mmapped, and unmapped when freed. glibc starts at 128 KiB; 32 KiB also covers the
# delta events of a fast stream (up to 64 KiB, worker/writer.py), whose copies otherwise fragment the heap.
MMAP_THRESHOLD_BYTES = 32 * 1024


def tune_gc() -> None:
    """Keep the garbage collector off the fan-out's tail latency.

    With 1,000 viewers of one generation the default thresholds ran collections often enough, over the
    thousands of live tasks and generators, to put the delivery lag p99 at 114 ms; moving what exists at
    startup out of the collector's sight and collecting the youngest generation less often brought it to
    16 ms, at the same CPU and memory (``bench/fanout.py``). A worker starting a burst of 500 generations paused
    90-156 ms in full collections (each a stall of every stream and claim on its loop) until it did the same
    (issue 14: burst pickup p99 690 -> 450 ms at the median of four runs, ``bench --scenario burst``).
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def pin_mmap_threshold(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold so that large buffers go back to the system when they are freed.

    glibc raises the threshold to the size of every mmapped block freed (up to 32 MiB), after which blocks of
    that size come from the heap, and a heap whose blocks were freed out of order cannot shrink. Large events (SSE
    frames, joined chunks, XRANGE replies of tens to hundreds of KB) made exactly that pattern: 50 viewers that
    stopped reading a 10 MB stream left the API 87-338 MiB larger, nearly all of it freed memory held by the heap
    (``malloc_trim`` gave it back). With the threshold fixed at 32 KiB: 9-15 MiB (``tests/api/test_abuse.py``,
    issue 18). Small events, the common case, never reach it. An operator's own ``MALLOC_MMAP_THRESHOLD_`` wins;
    other C libraries are left alone.

    Returns:
        Whether the threshold was set.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # no libc found, or one without mallopt
        logger.debug("mallopt unavailable; the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
