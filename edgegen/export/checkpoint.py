"""Loading user code and checkpoints safely.

Checkpoints are opened with ``torch.load(..., weights_only=True)`` or safetensors before any
user callable sees them: a pickle that needs arbitrary code is refused, never executed.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from ..checksums import sha256_file
from ..errors import ExportError, UnsafeCheckpointError


def verify_checkpoint(path: str | Path) -> str:
    """Check that a checkpoint loads without executing code; return its sha256.

    Raises:
        ExportError: the file does not exist or is not a readable checkpoint.
        UnsafeCheckpointError: the pickle references objects outside torch's allow-list
            (``weights_only=True`` refused it).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"weights '{path}': expected a checkpoint file, got no such file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                list(f.keys())
        except Exception as exc:  # safetensors raises its own error types
            raise ExportError(f"weights '{path}': expected a safetensors file, could not read it "
                              f"({_first_line(exc)})") from exc
        return sha256_file(path)
    _check_container(path)
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "global" not in reason.lower():
            raise ExportError(f"weights '{path}': expected a torch checkpoint, got a damaged or foreign pickle "
                              f"({reason})") from exc
        raise UnsafeCheckpointError(
            f"weights '{path}': expected tensors and plain containers (torch.load weights_only=True), got a "
            f"pickle that needs arbitrary code ({reason}). edgegen does not execute pickled code: re-save the "
            "state_dict (torch.save(model.state_dict(), ...)) or convert it to safetensors.") from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ExportError(f"weights '{path}': expected a torch checkpoint, could not read it "
                          f"({_first_line(exc)})") from exc
    return sha256_file(path)


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name (never "()")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """torch's weights_only refusal wraps the reason in advice; keep the reason."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return _first_line(exc)


def _check_container(path: Path) -> None:
    """A torch checkpoint is a zip (``torch.save``) or a pickle (legacy): refuse anything else by
    its first bytes, so a text or empty file is not reported as an unsafe pickle."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ExportError(f"weights '{path}': expected a torch checkpoint, got an empty file (0 bytes)")
    # a zip local header (torch.save), or the PROTO opcode of a pickle of protocol 2 and later (legacy)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return
    raise ExportError(f"weights '{path}': expected a torch checkpoint (a zip written by torch.save, or a pickle) "
                      f"or a .safetensors file, got a file starting with {head!r}")


def split_module_spec(spec: str) -> tuple[Path, str]:
    """``FILE.py:CALLABLE`` -> (existing file path, callable name). Raises ExportError."""
    file, sep, name = spec.rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise ExportError(f"--module: expected FILE.py:CALLABLE, got '{spec}'")
    if not Path(file).is_file():
        raise ExportError(f"--module: expected an existing Python file, got '{file}'")
    return Path(file), name


def load_callable(spec: str) -> Callable[..., Any]:
    """Resolve ``FILE.py:CALLABLE`` to the callable, importing FILE.py under a private name.

    Raises:
        ExportError: bad spec, missing file, import failure, or no such callable.
    """
    path, name = split_module_spec(spec)
    file = str(path)
    mod_name = f"edgegen_user_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(path.resolve().parent))  # let the user's file import its neighbours
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exc:
        raise ExportError(f"--module: importing '{file}' called sys.exit({exc.code!r}); expected a module that "
                          "defines the callable (guard script code with if __name__ == '__main__')") from None
    except Exception as exc:
        raise ExportError(f"--module: importing '{file}' failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ExportError(f"--module: expected a callable '{name}' in '{file}', "
                          f"got {'nothing' if fn is None else type(fn).__name__}")
    return fn


def build_module(spec: str, weights: str | Path | None) -> tuple[torch.nn.Module, str | None]:
    """Call the user's CALLABLE (with the weights path if given) and return (module in eval mode, sha256).

    Raises:
        ExportError / UnsafeCheckpointError: see :func:`verify_checkpoint`; or the callable did not
            return a ``torch.nn.Module``.
    """
    digest = verify_checkpoint(weights) if weights is not None else None
    fn = load_callable(spec)
    try:
        module = fn(str(Path(weights).resolve())) if weights is not None else fn()
    except SystemExit as exc:
        raise ExportError(f"--module: calling '{spec}' called sys.exit({exc.code!r}); expected it to return a "
                          "torch.nn.Module") from None
    except Exception as exc:
        raise ExportError(f"--module: calling '{spec}' failed: {type(exc).__name__}: {_first_line(exc)}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ExportError(f"--module: expected '{spec}' to return a torch.nn.Module, got {type(module).__name__}")
    return module.float().eval(), digest
