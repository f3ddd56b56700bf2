"""TensorRT engines at run time: a serialized engine (built by :mod:`edgegen.compile`) behind the
Engine protocol, and the device facts an engine is valid for.

Written against TensorRT's documented Python API: the named-tensor interface
(``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) that
TensorRT 8.6 (JetPack 6) and 10.x share. Device memory and the stream go through
``cuda-python`` (``cuda.bindings.runtime`` or the older ``cuda.cudart``), never torch.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendUnavailableError, EngineLoadError
from .base import TensorSpec, check_feeds


def _trt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError("tensorrt", "tensorrt", str(exc)) from exc
    return trt


def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as exc:
            raise BackendUnavailableError("tensorrt", "tensorrt", f"cuda-python is missing ({exc})") from exc
    return cudart


def _check(result):
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EngineLoadError(f"CUDA call failed with error {err}")
    return rest[0] if len(rest) == 1 else rest


@dataclass(frozen=True)
class DeviceInfo:
    """What makes a TensorRT engine valid: it only runs where all of these match."""

    gpu_name: str
    compute_capability: str  # "8.7" (Jetson Orin), "8.9" (Ada), "9.0" (Hopper)
    tensorrt_version: str


def device_info(device: int = 0) -> DeviceInfo:
    """Name, compute capability and TensorRT version of this machine's GPU.

    Raises BackendUnavailableError where TensorRT or cuda-python is missing."""
    trt, cudart = _trt(), _cudart()
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name.strip("\x00 "), f"{props.major}.{props.minor}", trt.__version__)


def _release(cudart, buffers: dict, stream) -> None:
    """Free an engine's device buffers and stream (once: from close() or the finalizer)."""
    for ptr, _ in buffers.values():
        _check(cudart.cudaFree(ptr))
    buffers.clear()
    _check(cudart.cudaStreamDestroy(stream))


class TensorRTEngine:
    """A deserialized TensorRT engine behind the Engine protocol: host numpy in, host numpy out.

    Inputs are copied to device buffers (grown as needed), the engine runs on its own CUDA
    stream, outputs are copied back into fresh arrays owned by the caller. Device memory is
    held until :meth:`close` (or the end of a ``with`` block); an engine never closed is released
    when it is garbage-collected or at interpreter exit, errors included (``weakref.finalize``).
    """

    backend = "tensorrt"

    def __init__(self, path: str | Path, *, precision: str = "fp32", device: int = 0):
        trt, self._cudart = _trt(), _cudart()
        self.path, self.precision = Path(path), precision
        _check(self._cudart.cudaSetDevice(device))
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineLoadError(f"TensorRT could not deserialize '{path}' (built for another GPU or version?)")
        self._context = self._engine.create_execution_context()
        self._stream = _check(self._cudart.cudaStreamCreate())
        inputs, outputs = [], []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims = tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(name))
            spec = TensorSpec(name, dims, np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name)
            (inputs if self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self._buffers: dict[str, tuple[int, int]] = {}
        self._release = weakref.finalize(self, _release, self._cudart, self._buffers, self._stream)

    def close(self) -> None:
        """Free the device buffers and the stream; the engine cannot run afterwards. Idempotent."""
        self._release()
        self._context = self._engine = None

    def __enter__(self) -> "TensorRTEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._release.alive:
            raise EngineLoadError(f"tensorrt engine '{self.path.name}' is closed")
        check_feeds(self.inputs, feeds, f"tensorrt engine '{self.path.name}'")
        h2d, d2h = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for spec in self.inputs:
            array = np.ascontiguousarray(feeds[spec.name])
            ptr = self._device_buffer(spec.name, array.nbytes)
            self._context.set_input_shape(spec.name, array.shape)
            _check(self._cudart.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, h2d, self._stream))
            self._context.set_tensor_address(spec.name, ptr)
        results = {}
        for spec in self.outputs:
            shape = tuple(self._context.get_tensor_shape(spec.name))
            results[spec.name] = np.empty(shape, dtype=spec.dtype)
            self._context.set_tensor_address(spec.name, self._device_buffer(spec.name, results[spec.name].nbytes))
        if not self._context.execute_async_v3(self._stream):
            raise EngineLoadError(f"TensorRT execution of '{self.path.name}' failed")
        for spec in self.outputs:
            out = results[spec.name]
            _check(self._cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[spec.name][0], out.nbytes, d2h,
                                                self._stream))
        _check(self._cudart.cudaStreamSynchronize(self._stream))
        return results
