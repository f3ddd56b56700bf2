"""Process memory as the OS counts it: resident and peak RSS, what can still be allocated, and
freeing dropped engines.

Linux figures come from ``/proc/self/status`` (``VmRSS``, ``VmHWM``) and ``/proc/meminfo``
(``MemAvailable``); elsewhere the functions return None (``peak_rss_bytes`` falls back to
``ru_maxrss``), and callers skip what needs them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import resource
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

_MADV_DONTNEED = 4  # Linux <sys/mman.h>


def _proc_kib(path: str, key: str) -> int | None:
    """The kB figure of ``key`` in a /proc file such as ``/proc/self/status``, None where unknown."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _status_kib(key: str) -> int | None:
    return _proc_kib("/proc/self/status", key)


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
    kib = _proc_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def free_memory() -> None:
    """Collect garbage, so an engine dropped in a reference cycle goes now, not at the next collection.

    No ``malloc_trim(0)``: measured after each low-memory release, it changed neither the RSS after
    the release (within 5 MiB) nor the peak (0.813 vs 0.821 GiB; docs/memory.md): OpenVINO's and ONNX
    Runtime's large buffers are their own mappings and go back to the OS when the engine goes.
    """
    gc.collect()


@functools.lru_cache(maxsize=None)
def _libc():
    """The C library with ``madvise`` typed, once per process; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def release_file_pages(prefixes: Iterable[str | Path]) -> int:
    """Drop this process's resident pages of read-only file mappings whose path starts with one of
    ``prefixes`` (``madvise(MADV_DONTNEED)``); returns how many mappings were advised (0 off Linux).

    Why: OpenVINO memory-maps a model's weights (IR ``.bin``, ONNX external data, a model-cache
    blob), and its CPU plugin keeps that mapping for the compiled model's life while computing from
    its own repacked copy, so every page compilation read stays in the RSS: the weights counted
    twice (docs/memory.md). Dropping the pages is safe: only mappings without write permission are
    advised, whose pages are clean copies of the file and are read back from it if touched again.
    """
    libc = _libc()
    # realpath drops a trailing separator, which keeps "dir/" from matching "dir2/..."
    wanted = tuple(os.path.realpath(p) + (os.sep if str(p).endswith(os.sep) else "") for p in prefixes)
    if libc is None or not wanted:
        return 0
    advised = 0
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1] or not parts[5].startswith(wanted):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            advised += 1
    return advised


@contextlib.contextmanager
def releasing_file_pages(prefixes: Iterable[str | Path], period: float = 0.05) -> Iterator[None]:
    """Run the block while a thread calls :func:`release_file_pages` every ``period`` seconds, and
    once more at the end: a compilation (which releases the GIL) then never holds more than
    ``period``'s worth of the file's pages beside the copy it builds. Measured on the SD 1.5-size
    INT8 U-Net: compile peak 1.90 -> 1.11 GiB, compile and call times unchanged (docs/memory.md).
    """
    prefixes = [str(p) for p in prefixes]
    if _libc() is None or not prefixes:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period):
            release_file_pages(prefixes)

    thread = threading.Thread(target=loop, name="edgegen-release-pages", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release_file_pages(prefixes)
