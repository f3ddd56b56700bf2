"""Engines: one small module per backend behind one protocol (see ``base.py``).

Backends import lazily: importing this package imports neither OpenVINO nor ONNX Runtime,
and never torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import BackendUnavailableError
from .base import Engine, TensorSpec, check_feeds, check_finite

BACKENDS = ("openvino", "onnxruntime", "tensorrt")

__all__ = ["BACKENDS", "Engine", "TensorSpec", "available_backends", "check_feeds", "check_finite", "default_backend", "load_engine"]


def available_backends() -> list[str]:
    """Backends whose Python package is importable here, in order of preference on CPU."""
    names = {"openvino": "openvino", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}
    return [b for b in BACKENDS if importlib.util.find_spec(names[b]) is not None]


def default_backend() -> str:
    """OpenVINO where installed (the fastest CPU engine here), else ONNX Runtime."""
    found = available_backends()
    for name in ("openvino", "onnxruntime"):
        if name in found:
            return name
    raise BackendUnavailableError("onnxruntime", "runtime", "no CPU backend is installed")


def load_engine(path: str | Path, backend: str | None = None, *, precision: str = "fp32",
                device: str | None = None, **options) -> Engine:
    """Load a model file as an engine.

    Args:
        path: ``.onnx`` (OpenVINO, ONNX Runtime), ``.xml`` (OpenVINO IR) or ``.engine``/``.plan``
            (TensorRT).
        backend: one of :data:`BACKENDS`; None picks :func:`default_backend`.
        precision: what the engine computes in; see each backend.
        device: backend device ("CPU" for OpenVINO, "cpu"/"cuda"/"tensorrt" for ONNX Runtime).
    Raises:
        BackendUnavailableError: unknown or uninstalled backend, or OpenVINO IR for another backend.
    """
    backend = backend or default_backend()
    if Path(path).suffix == ".xml" and backend != "openvino":
        raise BackendUnavailableError(backend, None, f"'{Path(path).name}' is OpenVINO IR: expected backend openvino")
    if backend == "openvino":
        from .openvino import OpenVinoEngine
        return OpenVinoEngine(path, device=device or "CPU", precision=precision, **options)
    if backend == "onnxruntime":
        from .onnxruntime import OnnxRuntimeEngine
        return OnnxRuntimeEngine(path, device=device or "cpu", precision=precision, **options)
    if backend == "tensorrt":
        from .tensorrt import TensorRTEngine
        return TensorRTEngine(path, precision=precision, **options)
    raise BackendUnavailableError(backend, None, f"expected one of {', '.join(BACKENDS)}")
