"""Artifacts: a directory with ``edgegen.json`` and the component files it names.

The format is documented in ``docs/artifact.md``. Loading (:meth:`Artifact.load`) parses the
manifest once into frozen dataclasses (:mod:`edgegen.manifest`), confines every file it names to
the artifact directory and checks each file's sha256 against the one recorded at publish time
(cached: :mod:`edgegen.checksums`).

Writing (:func:`atomic_artifact`): everything goes to a staging directory beside the target that
replaces the target only once complete and valid, so an interrupted or failed export leaves the
previous artifact (or nothing) in place. One writer per target at a time (a lock file); the next
writer cleans what a killed one left.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import signal
import stat
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .atomic import umask_mode, write_json_atomic
from .checksums import cached_sha256, file_keys, remember
from .errors import ArtifactError, ManifestError
from .manifest import SCHEMA_VERSION, Component, Manifest, Variant, parse_manifest
from .types import Backend, Family, Precision

MANIFEST = "edgegen.json"
ENGINES_DIR = "engines"  # TensorRT engine cache, written beside the files after publishing: not recorded
MAX_MANIFEST_BYTES = 64 << 20
FAMILIES = tuple(f.value for f in Family)
# Test-only: kill this process with SIGKILL at the named point of atomic_artifact (fault tests).
_KILL_AT_ENV = "EDGEGEN_TEST_KILL_AT"


def _fault_point(name: str) -> None:
    if os.environ.get(_KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_artifact(out: str | Path) -> Iterator[tuple[Path, dict]]:
    """Stage a new artifact and swap it in only if the block completes and the result is valid.

    Yields ``(staging_dir, manifest)``: write component files under ``staging_dir`` and fill
    ``manifest`` (a dict). On success every file's sha256 is recorded under ``files``, the manifest
    is validated as :meth:`Artifact.load` would (so an invalid artifact is never published), written
    as ``edgegen.json``, and the staging directory replaces ``out``. On any exception the staging
    directory is removed and ``out`` is left as it was.

    Only one writer per ``out`` at a time: a lock file ``.OUT.lock`` is held from start to publish.
    Under it, what a killed writer left is cleaned first: ``.OUT.staging-*`` removed, and
    ``.OUT.old-*`` moved back to ``out`` when ``out`` is missing (a kill between the two renames).

    Raises:
        ArtifactError: ``out`` exists, is not empty and is not an edgegen artifact (edgegen never
            replaces a directory it did not write); another process is writing ``out``; writing
            failed (disk full, permissions: one line, nothing left behind); the manifest is invalid
            (a ManifestError naming the key).
    """
    out = Path(out).absolute()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"output '{out}': expected a writable parent directory, got {exc}") from None
    with _writer_lock(out):
        try:
            _recover(out)
        except OSError as exc:
            raise ArtifactError(f"output '{out}': could not clean up after an interrupted export ({exc})") from None
        _check_target(out)
        staging = _mkdtemp(out)
        manifest: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "edgegen_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            yield staging, manifest
            _fault_point("before-seal")
            _seal(staging, manifest, out)
            _swap(staging, out)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise ArtifactError(f"output '{out}': writing the artifact failed, nothing was written ({exc})") from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ArtifactError(f"output '{out}': expected a new path or an existing edgegen artifact, "
                            f"got an existing {'directory' if out.is_dir() else 'file'} without {MANIFEST}")


def _mkdtemp(out: Path) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    except OSError as exc:
        raise ArtifactError(f"output '{out}': expected a writable parent directory, got {exc}") from None


def _leftovers(out: Path, kind: str) -> list[Path]:
    """``.OUT.staging-*`` or ``.OUT.old-*`` beside ``out``, oldest change first."""
    found = glob.glob(os.path.join(glob.escape(str(out.parent)), f".{glob.escape(out.name)}.{kind}-*"))
    return sorted((Path(p) for p in found), key=lambda p: p.lstat().st_ctime_ns)


def _recover(out: Path) -> None:
    """Under the writer lock nobody else writes ``out``: whatever a previous writer left is stale."""
    olds = _leftovers(out, "old")
    if olds and not out.exists():
        os.replace(olds.pop(), out)  # killed between the two renames: the previous artifact comes back
    for stale in olds + _leftovers(out, "staging"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _writer_lock(out: Path) -> Iterator[None]:
    """Hold ``.OUT.lock`` (flock, released by the kernel if the process dies); ArtifactError if taken."""
    lock = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise ArtifactError(f"output '{out}': expected a writable parent directory, got {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ArtifactError(f"output '{out}': expected no other writer, got another process (pid {holder}) "
                                f"writing it (lock {lock.name}); run again when it has finished") from None
        with contextlib.suppress(OSError):
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # else its previous holder removed the file between our open and flock
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _seal(staging: Path, manifest: dict, out: Path) -> None:
    """Modes, ``files`` (sha256 of every file), validation, then ``edgegen.json``."""
    staging.chmod(umask_mode(directory=True))
    files = {}
    for path in sorted(p for p in staging.rglob("*") if p.name != MANIFEST or p.parent != staging):
        if path.is_symlink():
            continue  # never chmod through a link; a named file behind one is refused by check_files
        mode = umask_mode(directory=path.is_dir())
        if stat.S_IMODE(path.stat().st_mode) != mode:  # files hard-linked from another artifact keep theirs
            path.chmod(mode)
        rel = path.relative_to(staging).as_posix()
        if path.is_file() and not path.is_symlink() and rel.split("/")[0] != ENGINES_DIR:
            files[rel] = {"sha256": cached_sha256(path, store=False), "size": path.stat().st_size}
    manifest["files"] = files
    try:
        data = json.loads(json.dumps(manifest))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"output '{out}': the manifest is not JSON ({exc}); nothing was written") from None
    where = f"output '{out}': {MANIFEST} (not published)"
    check_files(staging, parse_manifest(data, where=where), where=where)
    remember(file_keys(staging / rel for rel in files))
    write_json_atomic(staging / MANIFEST, manifest)


def _swap(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    _fault_point("between-renames")
    try:
        os.replace(staging, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    _fault_point("after-publish")
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _referenced(spec: Manifest) -> list[tuple[str, str]]:
    """(key path, relative file) of every file the manifest names."""
    refs = []
    for name, comp in spec.components.items():
        refs.append((f"components.{name}.file", comp.file))
        for precision, by_backend in comp.variants.items():
            refs += [(f"components.{name}.variants.{precision.value}.{b.value}.file", v.file)
                     for b, v in by_backend.items()]
    if spec.tokenizer is not None:
        refs.append(("tokenizer.file", spec.tokenizer.file))
    return refs


def _sidecars(rel: str) -> list[str]:
    """Files a model file loads beside itself: ONNX external data, OpenVINO weights."""
    return [rel + ".data"] + ([rel[:-4] + ".bin"] if rel.endswith(".xml") else [])


def _inside(root: Path, rel: str, key: str, where: str) -> Path:
    """``root/rel`` resolved (symlinks followed); ManifestError unless it is a file inside ``root``."""
    real = (root / rel).resolve()
    if not real.is_relative_to(root.resolve()):
        raise ManifestError(key, "a file inside the artifact", f"{rel} (resolves to {real})", where)
    if not real.is_file():
        raise ManifestError(key, "an existing file inside the artifact", f"{rel} (not found)", where)
    return real


def check_files(root: Path, spec: Manifest, where: str = MANIFEST) -> None:
    """Every named file inside ``root`` and present; with ``files`` recorded, each listed and unchanged.

    Artifacts written before checksums existed have no ``files``: their paths are still confined,
    their bytes are not checked (see docs/artifact.md).
    Raises:
        ManifestError: a path that escapes, a missing file, a file not recorded, a size or sha256
            that differs from the recorded one (the key named is ``files.<path>``).
    """
    for key, rel in _referenced(spec):
        _inside(root, rel, key, where)
        for extra in _sidecars(rel):
            if (root / extra).exists() or (root / extra).is_symlink():
                _inside(root, extra, f"{key} (beside it: {extra})", where)
                if spec.files and extra not in spec.files:
                    raise ManifestError(f"files.{extra}", "a recorded sha256 (a file the model loads)",
                                        ManifestError.MISSING, where)
        if spec.files and rel not in spec.files:
            raise ManifestError(f"files.{rel}", f"a recorded sha256 (named by {key})", ManifestError.MISSING, where)
    for rel, record in spec.files.items():
        real = _inside(root, rel, f"files.{rel}", where)
        size = real.stat().st_size
        if size != record.size:
            raise ManifestError(f"files.{rel}.size", f"{record.size} bytes as published", size, where)
        digest = cached_sha256(real)
        if digest != record.sha256:
            raise ManifestError(f"files.{rel}.sha256", f"{record.sha256} as published (the file changed "
                                "since, or was replaced)", digest, where)


def _read_manifest(path: Path) -> Any:
    file = path / MANIFEST
    if not file.is_file():
        olds = _leftovers(Path(path).absolute(), "old")
        hint = f"; an interrupted export left the previous artifact in {olds[-1].name} (the next export " \
               "to this path restores it)" if olds and not path.exists() else ""
        raise ArtifactError(f"artifact '{path}': expected a directory with {MANIFEST}, got "
                            f"{'a directory without it' if path.is_dir() else 'no such directory'}{hint}")
    try:
        size = file.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ArtifactError(f"artifact '{path}': expected {MANIFEST} of at most {MAX_MANIFEST_BYTES} bytes, "
                                f"got {size}")
        return json.loads(file.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"artifact '{path}': {MANIFEST} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"artifact '{path}': {MANIFEST} could not be read ({exc})") from None


@dataclass
class Artifact:
    """An artifact: its directory and its manifest as typed data (:attr:`spec`).

    :meth:`load` reads a published one (validated and checked once); :meth:`staged` wraps one being
    written, whose manifest dict (:attr:`draft`) its writer fills. Readers use :attr:`spec` only.
    """

    path: Path
    _spec: Manifest | None = field(default=None, repr=False)
    draft: dict[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Read, validate and check ``path/edgegen.json`` and the files it names.

        Raises:
            ArtifactError: missing directory or manifest, invalid JSON; ManifestError (an ArtifactError)
                naming the key for a wrong type, a value out of range, an unknown family / precision /
                backend, a path outside the artifact, a missing file or a sha256 mismatch.
        """
        path = Path(path)
        raw = _read_manifest(path)
        where = f"artifact '{path}': {MANIFEST}"
        spec = parse_manifest(raw, where=where)
        try:
            check_files(path, spec, where=where)
        except OSError as exc:
            raise ArtifactError(f"artifact '{path}': a file could not be read ({exc})") from None
        return cls(path, _spec=spec)

    @classmethod
    def staged(cls, path: str | Path, manifest: dict[str, Any]) -> "Artifact":
        """An artifact being written (``atomic_artifact``'s staging directory and manifest dict).

        Its ``spec`` is parsed from the dict at every use, so variants a writer adds are seen; files
        are not checked (``atomic_artifact`` does that before publishing).
        """
        return cls(Path(path), draft=manifest)

    @property
    def spec(self) -> Manifest:
        """The typed manifest: parsed once by :meth:`load`; for a :meth:`staged` artifact, from its dict now."""
        if self._spec is not None:
            return self._spec
        return parse_manifest(self.draft, where=f"artifact '{self.path}': {MANIFEST} (staged)")

    @property
    def family(self) -> str:
        """``spec.family`` as its string (``"stable-diffusion"``, ``"unet"``, ...)."""
        return self.spec.family.value

    def component(self, name: str) -> Component:
        """The component ``name``. Raises ArtifactError naming the artifact and the components it has."""
        try:
            return self.spec.component(name)
        except ArtifactError as exc:
            raise ArtifactError(f"artifact '{self.path}': {exc}") from None

    def variant(self, name: str, precision: Precision | str | None = None,
                backend: Backend | str | None = None) -> Component | Variant:
        """The stored file entry of a component for a precision and backend (see :meth:`Component.variant`)."""
        try:
            return self.component(name).variant(precision, backend)
        except ArtifactError as exc:
            raise ArtifactError(f"artifact '{self.path}': {exc}") from None

    def component_path(self, name: str, precision: Precision | str | None = None,
                       backend: Backend | str | None = None) -> Path:
        """Path of a component's model file for a precision and backend.

        ``precision`` None or equal to the stored one gives the main file; otherwise the
        variant ``variants[precision][backend]``. OpenVINO also runs ONNX Runtime's QDQ variant.
        Raises ArtifactError when there is no such variant.
        """
        return self.path / self.variant(name, precision, backend).file

    def has_variant(self, name: str, precision: Precision | str, backend: Backend | str | None) -> bool:
        return self.component(name).has_variant(precision, backend)
