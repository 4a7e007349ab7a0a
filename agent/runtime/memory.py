"""Process-wide memory settings of the long-running agent (glibc's allocator).

glibc gives each thread that allocates its own malloc arena (up to eight per core), and every arena
keeps the freed memory it once held. The agent runs a dozen threads (capture, counting, sync,
scanning, ...), yet nearly all of its allocations happen in the counting thread with the GIL held;
one arena keeps 5-15 MB less resident at no measurable CPU cost (a fixed mmap threshold saved a
little more but cost 1.4 ms of system time per frame). Measured by tests/benchmarks/bench_memory.py.
Only ``retail-agent run`` calls this; a ``MALLOC_ARENA_MAX`` set in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # from glibc's malloc.h


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas; False where there is no glibc or the
    environment sets the limit already."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas))
    if done:
        logger.debug("malloc limited to %d arena(s)", arenas)
    return done
