"""TensorRT: engine building from ONNX, a device-keyed engine cache, and an engine backend.

Written against TensorRT's documented Python API: the named-tensor interface
(``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) that
TensorRT 8.6 (JetPack 6) and 10.x share. Device memory and the stream go through
``cuda-python`` (``cuda.bindings.runtime`` or the older ``cuda.cudart``), never torch.
INT8 is explicit quantization: the QDQ ONNX from ``edgegen export --int8 --backend onnxruntime``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np

from ..artifact import sha256_file, write_json_atomic
from ..errors import BackendUnavailableError, EngineLoadError
from .base import TensorSpec, check_feeds
from .profiles import DeviceInfo, Shape, cache_key, explain_mismatch

# Layer types kept in FP32 when an FP16 engine produces NaN/Inf (the SD VAE's known overflow
# sits in normalization statistics and attention softmax).
_FP16_SENSITIVE = ("REDUCE", "NORMALIZATION", "SOFTMAX", "UNARY", "ELEMENTWISE")


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


def device_info(device: int = 0) -> DeviceInfo:
    """Name, compute capability and TensorRT version of this machine's GPU."""
    trt, cudart = _trt(), _cudart()
    props = _check(cudart.cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return DeviceInfo(name.strip("\x00 "), f"{props.major}.{props.minor}", trt.__version__)


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, precision: str,
                 profiles: Mapping[str, tuple[Shape, Shape, Shape]], timing_cache: str | Path | None = None,
                 workspace_gb: float = 4.0, fp32_layers: tuple[str, ...] = ()) -> Path:
    """Build and serialize a TensorRT engine (no trtexec).

    Args:
        precision: "fp32", "fp16" (FP16 kernels allowed) or "int8" (explicit quantization from a
            QDQ ONNX; FP16 also allowed for the float parts).
        profiles: (min, opt, max) shape per dynamic input (:func:`~edgegen.runtimes.profiles.profile_shapes`).
        timing_cache: file read before and written after the build, shared across builds.
        fp32_layers: layer types (``trt.LayerType`` names) forced to FP32 (FP16 overflow fallback).
    Raises:
        BackendUnavailableError: TensorRT is not installed. EngineLoadError: parse or build failure.
    """
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineLoadError(f"TensorRT could not parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if fp32_layers:
        flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or trt.BuilderFlag.STRICT_TYPES
        config.set_flag(flag)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.type.name in fp32_layers:
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name in profiles:
            profile.set_shape(tensor.name, *profiles[tensor.name])
    config.add_optimization_profile(profile)
    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineLoadError(f"TensorRT failed to build an engine from '{onnx_path}' ({precision})")
    plan_path = Path(plan_path)
    _atomic_bytes(plan_path, bytes(serialized))
    if cache is not None:
        _atomic_bytes(Path(timing_cache), bytes(cache.serialize()))
    return plan_path


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class EngineCache:
    """Engines under ``root`` named by :func:`~edgegen.runtimes.profiles.cache_key`, each with a
    JSON sidecar recording the device, TensorRT version, precision and profile it was built for.

    An engine is only loaded on the device and TensorRT version it was built with; anything else
    is rebuilt, and :attr:`last_message` says why in one line.
    """

    def __init__(self, root: str | Path, device: DeviceInfo | None = None):
        self.root = Path(root)
        self.device = device or device_info()
        self.last_message: str | None = None

    def get(self, onnx_path: str | Path, *, precision: str, profiles: Mapping[str, tuple[Shape, Shape, Shape]],
            fp32_layers: tuple[str, ...] = ()) -> Path:
        """Path of a valid engine for these inputs, building it when missing or stale."""
        digest = sha256_file(onnx_path)
        key = cache_key(self.device, onnx_sha256=digest, precision=precision, profiles=profiles,
                        fp32_layers=fp32_layers)
        plan, meta = self.root / f"{key}.plan", self.root / f"{key}.json"
        self.last_message = None
        if plan.is_file() and meta.is_file():
            recorded = json.loads(meta.read_text())
            self.last_message = explain_mismatch(self.device, recorded)
            if self.last_message is None:
                return plan
        elif plan.is_file():
            self.last_message = "cached engine has no metadata: rebuilding"
        build_engine(onnx_path, plan, precision=precision, profiles=profiles,
                     timing_cache=self.root / "timing.cache", fp32_layers=fp32_layers)
        write_json_atomic(meta, {"gpu_name": self.device.gpu_name, "compute_capability": self.device.compute_capability,
                                 "tensorrt_version": self.device.tensorrt_version, "precision": precision,
                                 "fp32_layers": list(fp32_layers), "onnx_sha256": digest, "profiles": {k: [list(s) for s in v] for k, v in profiles.items()}})
        return plan


class TensorRTEngine:
    """A deserialized TensorRT engine behind the Engine protocol: host numpy in, host numpy out.

    Inputs are copied to device buffers (grown as needed), the engine runs on its own CUDA
    stream, outputs are copied back into fresh arrays owned by the caller.
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

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr))
            ptr = _check(self._cudart.cudaMalloc(max(nbytes, 1)))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
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

    def __del__(self):
        for ptr, _ in getattr(self, "_buffers", {}).values():
            try:
                self._cudart.cudaFree(ptr)
            except Exception:  # interpreter shutdown: CUDA may already be gone
                pass


def fp16_engine(cache: EngineCache, onnx_path: str | Path, *, profiles: Mapping[str, tuple[Shape, Shape, Shape]],
                feeds: Mapping[str, np.ndarray]) -> tuple[Path, tuple[str, ...]]:
    """An FP16 engine that produces finite outputs on ``feeds``.

    Builds FP16; where any output holds NaN/Inf (the SD VAE decoder's known FP16 overflow), rebuilds
    with normalization, reduction, softmax and elementwise layers kept in FP32.
    Returns (plan path, layer types kept in FP32). Raises ParityError if that is not enough.
    """
    from ..errors import ParityError

    for fp32_layers in ((), _FP16_SENSITIVE):
        plan = cache.get(onnx_path, precision="fp16", profiles=profiles, fp32_layers=fp32_layers)
        outputs = TensorRTEngine(plan, precision="fp16")(feeds)
        if all(np.isfinite(v).all() for v in outputs.values()):
            return plan, fp32_layers
    raise ParityError(f"FP16 engine of '{onnx_path}' gives NaN/Inf even with {', '.join(_FP16_SENSITIVE)} layers "
                      "in FP32: use fp32 or int8 for this component")
