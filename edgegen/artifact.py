"""Artifacts: a directory with ``edgegen.json`` and the component files it names.

The format is documented in ``docs/artifact.md``. Artifacts are written atomically
(:func:`atomic_artifact`): everything goes to a staging directory beside the target, which
replaces the target only once complete, so an interrupted or failed export leaves the
previous artifact (or nothing) in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import __version__
from .atomic import write_json_atomic  # noqa: F401  (re-exported: older imports)
from .errors import ArtifactError

MANIFEST = "edgegen.json"
SCHEMA_VERSION = 1
FAMILIES = ("stable-diffusion", "unet", "generator", "vae-decoder")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_artifact(out: str | Path) -> Iterator[tuple[Path, dict]]:
    """Stage a new artifact and swap it in only if the block completes.

    Yields ``(staging_dir, manifest)``: write component files under ``staging_dir`` and fill
    ``manifest`` (a dict); on success ``edgegen.json`` is written and the staging directory
    replaces ``out``. On any exception the staging directory is removed and ``out`` is left
    as it was.

    Raises:
        ArtifactError: ``out`` exists, is not empty and is not an edgegen artifact (edgegen
            never replaces a directory it did not write).
    """
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ArtifactError(f"output '{out}': expected a new path or an existing edgegen artifact, "
                            f"got an existing {'directory' if out.is_dir() else 'file'} without {MANIFEST}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "edgegen_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        yield staging, manifest
        write_json_atomic(staging / MANIFEST, manifest)
        _publishable(staging)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publishable(root: Path) -> None:
    """mkdtemp/mkstemp create owner-only entries; give the artifact the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


@dataclass
class Artifact:
    """A loaded artifact: its directory and parsed manifest.

    Use :meth:`load`; the manifest is validated there (schema version, family, component files).
    """

    path: Path
    manifest: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> "Artifact":
        """Read and validate ``path/edgegen.json``.

        Raises:
            ArtifactError: missing directory or manifest, invalid JSON, unknown schema version or
                family, or a component file that is not there.
        """
        path = Path(path)
        file = path / MANIFEST
        if not file.is_file():
            raise ArtifactError(f"artifact '{path}': expected a directory with {MANIFEST}, got "
                                f"{'a directory without it' if path.is_dir() else 'no such directory'}")
        try:
            manifest = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"artifact '{path}': {MANIFEST} is not valid JSON ({exc})") from exc
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ArtifactError(f"artifact '{path}': expected schema_version {SCHEMA_VERSION}, got {version!r}")
        family = manifest.get("family")
        if family not in FAMILIES:
            raise ArtifactError(f"artifact '{path}': expected family in {FAMILIES}, got {family!r}")
        for name, comp in manifest.get("components", {}).items():
            if not (path / comp["file"]).is_file():
                raise ArtifactError(f"artifact '{path}': component '{name}' expects file '{comp['file']}', not found")
        return cls(path, manifest)

    @property
    def family(self) -> str:
        return self.manifest["family"]

    def component(self, name: str) -> dict[str, Any]:
        comps = self.manifest.get("components", {})
        if name not in comps:
            raise ArtifactError(f"artifact '{self.path}': expected a component '{name}', has {sorted(comps)}")
        return comps[name]

    def component_path(self, name: str, precision: str | None = None, backend: str | None = None) -> Path:
        """Path of a component's model file for a precision and backend.

        ``precision`` None or equal to the stored one gives the main file; otherwise the
        variant ``variants[precision][backend]``. OpenVINO also runs ONNX Runtime's QDQ variant.
        Raises ArtifactError when there is no such variant.
        """
        return self.path / self.variant(name, precision, backend)["file"]

    def variant(self, name: str, precision: str | None = None, backend: str | None = None) -> dict[str, Any]:
        """The manifest entry of a component variant (see :meth:`component_path`)."""
        comp = self.component(name)
        if not precision or precision == comp.get("precision", "fp32"):
            return comp
        by_backend = comp.get("variants", {}).get(precision, {})
        for candidate in ([backend] if backend else []) + (["onnxruntime"] if backend == "openvino" else []):
            if candidate in by_backend:
                return by_backend[candidate]
        if backend is None and by_backend:
            return next(iter(by_backend.values()))
        have = [f"{p}/{b}" for p, v in comp.get("variants", {}).items() for b in v]
        raise ArtifactError(f"artifact '{self.path}': component '{name}' has no '{precision}' variant for backend "
                            f"'{backend}' (has {[comp.get('precision', 'fp32'), *have]})")

    def has_variant(self, name: str, precision: str, backend: str | None) -> bool:
        try:
            self.variant(name, precision, backend)
            return True
        except ArtifactError:
            return False
