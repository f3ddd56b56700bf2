"""What every pipeline shares: loading components as timed engines, and the result type."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..artifact import Artifact
from ..errors import BackendUnavailableError, EngineInputError
from ..images import save_png, to_uint8
from ..runtimes import Engine, default_backend, load_engine
from ..runtimes.openvino import static_pays
from ..types import ComputeHint, Precision, ShapeMode, parse_enum


class TimedEngine:
    """An engine that adds up the wall time and count of its calls (for reports and benchmarks)."""

    def __init__(self, name: str, engine: Engine):
        self.name, self.engine = name, engine
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.seconds, self.calls = 0.0, 0

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return self.engine(feeds)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def input(self, name: str):
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise EngineInputError(f"engine '{self.name}': expected an input '{name}', has {[s.name for s in self.inputs]}")


EngineHook = Callable[[str, Engine], Engine]
"""Wraps each engine a pipeline loads: ``hook(component name, engine) -> engine`` (recording
calibration feeds, counting calls). Given when the pipeline is built, never swapped in later."""


def load_components(artifact: Artifact, names: list[str], *, backend: str | None, precision: str | None,
                    device: str | None = None, engine_hook: EngineHook | None = None,
                    compute: str | None = None, shapes: str = "auto") -> dict[str, TimedEngine]:
    """Load the named components of an artifact as timed engines on one backend.

    Args:
        precision: which file variant runs (:class:`~edgegen.types.Precision`): None each
            component's stored one; "int8" each component's INT8 variant for the backend where it
            has one (the others stay as stored); "fp16" / "fp32" that variant. "bf16" is accepted
            as the older spelling of ``compute="bf16"`` on the stored files.
        compute: how FP32 files are computed (:class:`~edgegen.types.ComputeHint`): None or "f32"
            exactly, "bf16" in BF16 (OpenVINO only; faster only where the CPU has BF16 units).
        engine_hook: when given, wraps every loaded engine (inside the timing).
        shapes: :class:`~edgegen.types.ShapeMode`: OpenVINO compiles each call's exact shapes
            ("static"), once for any shape ("dynamic"), or as measured faster ("auto", see
            :func:`edgegen.runtimes.openvino.static_pays`).
    Raises:
        EngineInputError naming the argument, BackendUnavailableError (bf16 or static shapes off
        OpenVINO), ArtifactError.
    """
    precision, compute = variant_and_hint(precision, compute)
    try:
        shapes = parse_enum(ShapeMode, shapes, "shapes")
    except ValueError as exc:
        raise EngineInputError(str(exc)) from None
    engines = _load_engines(artifact, names, backend=backend, precision=precision, device=device, compute=compute,
                            shapes=shapes)
    hook = engine_hook or (lambda _name, engine: engine)
    return {name: TimedEngine(name, hook(name, engine)) for name, engine in engines.items()}


def variant_and_hint(precision: str | None, compute: str | None) -> tuple[str | None, ComputeHint]:
    """(file variant or None, compute hint) from a load's ``precision`` / ``compute`` arguments."""
    if precision == ComputeHint.bf16.value:
        if compute not in (None, ComputeHint.bf16.value):
            raise EngineInputError(f"precision 'bf16' means compute='bf16'; got compute={compute!r} as well")
        precision, compute = None, ComputeHint.bf16.value
    try:
        if precision is not None:
            precision = parse_enum(Precision, precision, "precision").value
        return precision, parse_enum(ComputeHint, compute or ComputeHint.f32.value, "compute")
    except ValueError as exc:
        raise EngineInputError(str(exc)) from None


def _load_engines(artifact: Artifact, names: list[str], *, backend: str | None, precision: str | None,
                  device: str | None, compute: ComputeHint, shapes: ShapeMode) -> dict[str, Engine]:
    backend = backend or default_backend()
    if compute is ComputeHint.bf16 and backend != "openvino":
        raise BackendUnavailableError(backend, None, "compute bf16: expected backend openvino (it computes "
                                      "fp32 graphs in BF16 on CPUs that support it)")
    if shapes is ShapeMode.static and backend != "openvino":
        raise BackendUnavailableError(backend, None, "shapes static: expected backend openvino (the others "
                                      "run their graphs as built)")
    if backend == "tensorrt":
        return _tensorrt_components(artifact, names, precision)
    engines = {}
    for name in names:
        stored = artifact.component(name).precision.value
        if precision in (None, stored) or (precision == "int8" and not artifact.has_variant(name, "int8", backend)):
            # Components whose INT8 lost the quality or speed gate stay in their stored precision;
            # on OpenVINO as IR where the artifact has it.
            path, variant = artifact.component_path(name, None, backend), stored
        else:
            path, variant = artifact.component_path(name, precision, backend), precision
        hint = ComputeHint.bf16.value if compute is ComputeHint.bf16 and variant == "fp32" else variant
        options = {"static": static_pays(name, variant, shapes)} if backend == "openvino" else {}
        engines[name] = load_engine(path, backend, precision=hint, device=device, **options)
    return engines


def _tensorrt_components(artifact: Artifact, names: list[str], precision: str | None) -> dict[str, Engine]:
    """TensorRT engines ``edgegen compile`` built into ``ART/engines`` (never built here).

    ``precision`` None picks fp16 where every component has an fp16 engine, else fp32. Raises
    EngineLoadError naming the ``edgegen compile`` command when an engine is missing or was
    built for another device.
    """
    from ..compile.tensorrt import compiled_precisions, find_engine
    from ..runtimes.tensorrt import TensorRTEngine, device_info

    if precision is None:
        have = [set(compiled_precisions(artifact, name)) for name in names]
        precision = "fp16" if all("fp16" in h for h in have) else "fp32"
    device = device_info()
    return {name: TensorRTEngine(find_engine(artifact, name, precision, device), precision=precision)
            for name in names}


@dataclass
class Generation:
    """The result of a pipeline call.

    Attributes:
        images: (B, H, W, C) float32 in [0, 1]; C is 1 (grayscale) or 3 (RGB).
        info: what produced them (prompt, seed, sampler, steps, guidance_scale, backend, ...).
        timings: ``{"total_s": float, "engines": {name: {"seconds": float, "calls": int}}}``.
    """

    images: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)

    def uint8(self) -> np.ndarray:
        """(B, H, W, C) uint8 images."""
        return to_uint8(self.images)

    def to_pil(self) -> list:
        """The images as Pillow images (mode L or RGB)."""
        from PIL import Image

        return [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in self.uint8()]

    def save(self, out_dir: str | Path, prefix: str = "image", start: int = 0) -> list[Path]:
        """Write ``prefix-0000.png`` ... with ``info`` as PNG text chunks; returns the paths.

        ``start`` numbers the first image (the CLI numbers images across its batches, so the CLI
        and this method name the n-th image of a run alike: ``image-0000.png``, ``image-0001.png``).
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        text = {k: v for k, v in self.info.items() if v is not None}
        paths = []
        for i, image in enumerate(self.uint8(), start=start):
            paths.append(save_png(out / f"{prefix}-{i:04d}.png", image, {**text, "index": i}))
        return paths


def timings(engines: Mapping[str, TimedEngine], start: float) -> dict[str, Any]:
    total = time.perf_counter() - start
    per = {name: {"seconds": e.seconds, "calls": e.calls} for name, e in engines.items()}
    inside = sum(e.seconds for e in engines.values())
    return {"total_s": total, "engines": per, "engine_s": inside, "outside_s": total - inside}


def reset(engines: Mapping[str, TimedEngine]) -> None:
    for e in engines.values():
        e.seconds, e.calls = 0.0, 0
