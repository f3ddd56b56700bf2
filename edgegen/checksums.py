"""sha256 of artifact files, cached by file identity so a large U-Net is hashed once, not per load.

The cache key is the file's identity and change stamps as ``os.stat`` gives them: device, inode,
size, ``st_mtime_ns`` and ``st_ctime_ns``. Any write to the file, a truncation, a ``touch`` or a
replacement by another file changes at least one of them (the kernel sets ``ctime`` on every
change, and user code cannot set it back), so a hit means the bytes were hashed before. The path is
deliberately not in the key: hashes computed while an export stages its files serve the first load
of the published artifact (a directory rename changes no file's inode or ctime).

Hits are kept in memory and in ``sha256.json`` under ``$EDGEGEN_CACHE_DIR``, else
``$XDG_CACHE_HOME/edgegen``, else ``~/.cache/edgegen`` (at most :data:`MAX_ENTRIES`, oldest dropped).
A cache that cannot be read or written only costs a re-hash. The cache trusts whoever can write it
(your own cache directory), as checksums trust whoever can write ``edgegen.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .atomic import write_json_atomic

MAX_ENTRIES = 4096
CACHE_FILE = "sha256.json"
_memo: dict[str, str] = {}
_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (always reads the file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where the persistent hash cache lives (see the module docstring)."""
    if os.environ.get("EDGEGEN_CACHE_DIR"):
        return Path(os.environ["EDGEGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgegen"


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _read_disk() -> dict[str, str]:
    try:
        data = json.loads((cache_dir() / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and _HEX.fullmatch(v)}


def remember(digests: dict[str, str]) -> None:
    """Store ``{key: sha256}`` in memory and, best effort, on disk."""
    _memo.update(digests)
    merged = {**_read_disk(), **digests}
    trimmed = dict(list(merged.items())[-MAX_ENTRIES:])
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        write_json_atomic(cache_dir() / CACHE_FILE, trimmed)
    except OSError:
        pass  # a read-only or full home directory: the next load hashes again


def cached_sha256(path: str | Path, *, store: bool = True) -> str:
    """sha256 of ``path``, from the cache when the file is unchanged since it was last hashed.

    ``store=False`` leaves the persistent cache alone (callers hashing many files store once,
    with :func:`remember`). Raises OSError when the file cannot be read.
    """
    key = _key(os.stat(path))
    if key in _memo:
        return _memo[key]
    disk = _read_disk().get(key)
    if disk is not None:
        _memo[key] = disk
        return disk
    digest = sha256_file(path)
    if _key(os.stat(path)) == key:  # unchanged while it was read: safe to remember
        if store:
            remember({key: digest})
        else:
            _memo[key] = digest
    return digest


def file_keys(paths) -> dict[str, str]:
    """``{cache key: sha256}`` of files already hashed in this process (for :func:`remember`)."""
    out = {}
    for path in paths:
        key = _key(os.stat(path))
        if key in _memo:
            out[key] = _memo[key]
    return out
