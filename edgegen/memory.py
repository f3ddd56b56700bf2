"""Process memory as the OS counts it: resident and peak RSS, what can still be allocated, and
handing freed memory back.

Linux figures come from ``/proc/self/status`` (``VmRSS``, ``VmHWM``) and ``/proc/meminfo``
(``MemAvailable``); elsewhere the functions return None (``peak_rss_bytes`` falls back to
``ru_maxrss``), and callers skip what needs them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import resource
import sys
from functools import lru_cache
from pathlib import Path


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int | None:
    """This process's resident set size now (``VmRSS``), None where unknown."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM``).

    Not ``ru_maxrss`` on Linux: Linux carries the maximum RSS over ``exec``, and Python's
    subprocess starts children with ``vfork``, so a child's ``ru_maxrss`` starts at its parent's
    peak. Elsewhere ``ru_maxrss`` (kilobytes on Linux and BSD, bytes on macOS) is the fallback.
    """
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (``MemAvailable``), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def free_memory() -> None:
    """Collect garbage, then ask glibc to return free heap pages to the OS (``malloc_trim(0)``).

    Without the trim, memory an engine freed stays in glibc's arenas and counts in RSS until
    the heap happens to shrink; with it, RSS drops when a released engine's memory is free
    (measured in ``docs/memory.md``).
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
