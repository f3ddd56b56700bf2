"""ONNX Runtime engines (CPU by default; CUDA / TensorRT execution providers on request)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendUnavailableError, EngineLoadError
from .base import TensorSpec, check_feeds, check_finite, identify

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
               "tensor(int8)": "int8", "tensor(bool)": "bool"}

_PROVIDERS = {"cpu": ["CPUExecutionProvider"],
              "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
              "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


def _specs(args) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(a.name, tuple(d if isinstance(d, int) else (d or None) for d in a.shape),
                            _ORT_DTYPES.get(a.type, a.type)) for a in args)


class OnnxRuntimeEngine:
    """An ``onnxruntime.InferenceSession`` behind the :class:`~edgegen.runtimes.base.Engine` protocol.

    Args:
        path: an ``.onnx`` file (external data beside it is found by ONNX Runtime).
        device: "cpu", "cuda" or "tensorrt" (the execution provider).
        precision: informational; ONNX Runtime runs the graph in the precision it was saved in.
        threads: intra-op threads; None lets ONNX Runtime use every physical core.
        check_finite: raise :class:`~edgegen.errors.NonFiniteError` when a floating feed or output
            holds NaN / Inf (default). False only where non-finite values are the thing measured
            (an overflow probe, a gate that reports them itself).
    Raises:
        BackendUnavailableError: onnxruntime is missing, or the device's provider is not in
            this onnxruntime build.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, device: str = "cpu", precision: str = "fp32",
                 threads: int | None = None, check_finite: bool = True):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime", "runtime", str(exc)) from exc
        if device not in _PROVIDERS:
            raise BackendUnavailableError("onnxruntime", None, f"device: expected one of {sorted(_PROVIDERS)}, got '{device}'")
        wanted = _PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailableError(
                "onnxruntime", None,
                f"{wanted} is not in this onnxruntime build (available: {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu for CUDA / TensorRT")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 4  # failures reach the user as one edgegen error line, not ORT's log too
        if threads:
            options.intra_op_num_threads = threads
        identify(self, path, device=device, precision=precision, check_finite=check_finite)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=_PROVIDERS[device])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
            raise EngineLoadError(f"onnxruntime could not load '{path}': {str(exc).strip().splitlines()[-1]}") from exc
        self.inputs = _specs(self._session.get_inputs())
        self.outputs = _specs(self._session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def close(self) -> None:
        """Drop the ``InferenceSession`` (its weights and arena go with the last reference); the engine
        cannot run afterwards. Idempotent."""
        self._session = None

    def __enter__(self) -> "OnnxRuntimeEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Raises EngineInputError (feeds do not match ``inputs``) or NonFiniteError."""
        check_feeds(self.inputs, feeds, f"onnxruntime engine '{self.path.name}'")
        if self._session is None:
            raise EngineLoadError(f"{self._name} was closed; load it again to run it")
        if self.check_finite:
            check_finite(feeds, self._name, "input")
        outputs = dict(zip(self._output_names, self._session.run(self._output_names, dict(feeds))))
        if self.check_finite:
            check_finite(outputs, self._name, "output")
        return outputs
