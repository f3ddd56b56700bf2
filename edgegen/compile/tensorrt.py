"""TensorRT engine building: ONNX -> serialized engine, a device-keyed engine cache, the FP16
overflow fallback, and the artifact's engine index that pipelines load from.

Engines are built with TensorRT's Python API (no ``trtexec``). INT8 is explicit quantization:
the QDQ ONNX from ``edgegen quantize --backend onnxruntime``. Everything lives under
``ART/engines/``: ``<key>.plan`` + ``<key>.json`` (the cache, see
:func:`~edgegen.compile.profiles.cache_key`), ``timing.cache``, and ``index.json`` naming, per
component and precision, the engine :func:`compile_tensorrt` chose for this artifact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..artifact import Artifact
from ..checksums import sha256_file
from ..atomic import write_bytes_atomic, write_json_atomic
from ..errors import EngineLoadError, ParityError
from ..progress import ProgressCallback, silent
from ..runtimes.tensorrt import DeviceInfo, TensorRTEngine, _trt, device_info
from ..types import Precision
from .profiles import MAX_PROMPT_WINDOWS, EngineSpec, Shape, cache_key, engine_specs, explain_mismatch

# Layer types kept in FP32 when an FP16 engine produces NaN/Inf (the SD VAE's known overflow
# sits in normalization statistics and attention softmax).
FP16_SENSITIVE = ("REDUCE", "NORMALIZATION", "SOFTMAX", "UNARY", "ELEMENTWISE")
INDEX = "index.json"


def _parse(trt, builder, logger, onnx_path: str | Path):
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineLoadError(f"TensorRT could not parse '{onnx_path}': {errors}")
    return network, parser


def _pin_fp32(trt, network, config, layer_types: Sequence[str]) -> None:
    flag = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None) or trt.BuilderFlag.STRICT_TYPES
    config.set_flag(flag)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type.name in layer_types:
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)


def build_engine(onnx_path: str | Path, plan_path: str | Path, *, precision: str,
                 profiles: Mapping[str, tuple[Shape, Shape, Shape]], timing_cache: str | Path | None = None,
                 workspace_gb: float = 4.0, fp32_layers: tuple[str, ...] = ()) -> Path:
    """Build and serialize a TensorRT engine, written atomically to ``plan_path``.

    Args:
        precision: "fp32", "fp16" (FP16 kernels allowed) or "int8" (explicit quantization from a
            QDQ ONNX; FP16 also allowed for the float parts).
        profiles: (min, opt, max) shape per input (:class:`~edgegen.compile.profiles.EngineSpec`).
        timing_cache: file read before and written after the build, shared across builds.
        fp32_layers: layer types (``trt.LayerType`` names) forced to FP32 (FP16 overflow fallback).
    Raises:
        BackendUnavailableError: TensorRT is not installed. EngineLoadError: parse or build failure.
    """
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if fp32_layers:
        _pin_fp32(trt, network, config, fp32_layers)
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
    Path(plan_path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(plan_path, bytes(serialized))
    if cache is not None:
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
    return Path(plan_path)


class EngineCache:
    """Engines under ``root`` named by :func:`~edgegen.compile.profiles.cache_key`, each with a
    JSON sidecar recording the device, TensorRT version, precision and profile it was built for.

    An engine is only reused on the device and TensorRT version it was built with; anything else
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
            self.last_message = explain_mismatch(self.device, json.loads(meta.read_text()))
            if self.last_message is None:
                return plan
        elif plan.is_file():
            self.last_message = "cached engine has no metadata: rebuilding"
        build_engine(onnx_path, plan, precision=precision, profiles=profiles,
                     timing_cache=self.root / "timing.cache", fp32_layers=fp32_layers)
        write_json_atomic(meta, {**vars(self.device), "precision": precision, "fp32_layers": list(fp32_layers),
                                 "onnx_sha256": digest,
                                 "profiles": {k: [list(s) for s in v] for k, v in profiles.items()}})
        return plan


def probe_feeds(spec: EngineSpec) -> dict[str, np.ndarray]:
    """Inputs at the profile's opt shapes: N(0, 1) floats (x3: latents can be large), token ids
    and labels 0, timesteps at mid-schedule."""
    rng = np.random.default_rng(0)
    feeds = {}
    for tensor in spec.inputs:
        shape = spec.profile[tensor.name][1]
        if tensor.name == "timestep":
            feeds[tensor.name] = np.full(shape, 500, dtype=tensor.dtype)
        elif tensor.dtype.startswith("float"):
            feeds[tensor.name] = (3 * rng.standard_normal(shape)).astype(tensor.dtype)
        else:
            feeds[tensor.name] = np.zeros(shape, dtype=tensor.dtype)
    return feeds


def fp16_engine(cache: EngineCache, spec: EngineSpec) -> tuple[Path, tuple[str, ...]]:
    """An FP16 engine that produces finite outputs on :func:`probe_feeds`.

    Builds FP16; where any output holds NaN/Inf (the SD VAE decoder's known FP16 overflow), rebuilds
    with normalization, reduction, softmax and elementwise layers kept in FP32.
    Returns (plan path, layer types kept in FP32). Raises ParityError if that is not enough.
    """
    feeds = probe_feeds(spec)
    for fp32_layers in ((), FP16_SENSITIVE):
        plan = cache.get(spec.onnx, precision="fp16", profiles=spec.profile, fp32_layers=fp32_layers)
        with TensorRTEngine(plan, precision="fp16") as probe:
            outputs = probe(feeds)
        if all(np.isfinite(v).all() for v in outputs.values()):
            return plan, fp32_layers
    raise ParityError(f"FP16 engine of '{spec.onnx}' gives NaN/Inf even with {', '.join(FP16_SENSITIVE)} layers "
                      "in FP32: use fp32 or int8 for this component")


def _build(cache: EngineCache, spec: EngineSpec) -> dict:
    if spec.precision is Precision.fp16:
        plan, fp32_layers = fp16_engine(cache, spec)
    else:
        plan, fp32_layers = cache.get(spec.onnx, precision=spec.precision.value, profiles=spec.profile), ()
    return {"plan": plan.name, "onnx": spec.onnx.name, "fp32_layers": list(fp32_layers), **vars(cache.device),
            "request": dict(spec.request), "profile": {k: [list(s) for s in v] for k, v in spec.profile.items()}}


def compile_tensorrt(artifact: Artifact, precisions: Sequence[Precision], *, min: Sequence[int] | None = None,
                     opt: Sequence[int] | None = None, max: Sequence[int] | None = None,
                     prompt_windows: int = MAX_PROMPT_WINDOWS, progress: ProgressCallback | None = None) -> Path:
    """Build (or find in the cache) an engine per component and precision, and record them in
    ``ART/engines/index.json`` for pipelines to load. Returns the engines directory.

    ``min/opt/max`` and ``prompt_windows`` make the optimization profiles
    (:func:`~edgegen.compile.profiles.engine_specs`).

    Raises:
        BackendUnavailableError, EngineLoadError, ParityError (FP16 not finite even with the
        fallback), EdgegenError (profile request), ArtifactError (INT8 without a QDQ variant).
    """
    report = progress or silent
    root = artifact.path / "engines"
    cache = EngineCache(root)
    index = _read_index(root)
    for precision in precisions:
        specs = engine_specs(artifact, precision, min=min, opt=opt, max=max, prompt_windows=prompt_windows)
        stage = f"compile: TensorRT {precision.value} engines"
        for done, spec in enumerate(specs):
            report(stage, done, len(specs))
            index.setdefault(spec.component, {})[precision.value] = _build(cache, spec)
            if cache.last_message:
                report(f"{spec.component}: {cache.last_message}", 0, None)
            write_json_atomic(root / INDEX, index)
        report(stage, len(specs), len(specs))
    return root


def _read_index(root: Path) -> dict:
    file = root / INDEX
    return json.loads(file.read_text()) if file.is_file() else {}


def compiled_precisions(artifact: Artifact, component: str) -> list[str]:
    """The precisions ``edgegen compile`` built engines for, for one component."""
    return sorted(_read_index(artifact.path / "engines").get(component, {}))


def find_engine(artifact: Artifact, component: str, precision: str, device: DeviceInfo | None = None) -> Path:
    """The engine ``edgegen compile`` built for ``component`` in ``precision`` on this device.

    Never builds: pipelines only load. Raises EngineLoadError naming the command that builds it
    when there is none, its file is gone, or it was built for another GPU or TensorRT version.
    """
    entry = _read_index(artifact.path / "engines").get(component, {}).get(precision)
    command = (f"edgegen compile {artifact.path} --backend tensorrt"
               + {"fp16": " --fp16", "int8": " --int8"}.get(precision, ""))
    where = f"artifact '{artifact.path}': no TensorRT {precision} engine for component '{component}'"
    if entry is None or not (artifact.path / "engines" / entry["plan"]).is_file():
        raise EngineLoadError(f"{where}; build it with: {command}")
    mismatch = explain_mismatch(device or device_info(), entry)
    if mismatch is not None:
        raise EngineLoadError(f"{where} for this device ({mismatch.removesuffix(': rebuilding')}); build it with: {command}")
    return artifact.path / "engines" / entry["plan"]
