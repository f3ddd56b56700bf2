"""What every pipeline shares: loading components as timed engines, and the result type."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..artifact import Artifact
from ..errors import BackendUnavailableError, EngineInputError
from ..images import save_png, to_uint8
from ..memory import free_memory, peak_rss_bytes, rss_bytes
from ..runtimes import Engine, default_backend, load_engine
from ..runtimes.openvino import static_pays
from ..types import ComputeHint, MemoryMode, Precision, ShapeMode, parse_enum


class TimedEngine:
    """A pipeline's component: an engine that adds up the wall time and count of its calls (for
    reports and benchmarks), and in low-memory mode loads when first called and frees on :meth:`release`.

    Args:
        name: the component ("unet", "vae_decoder", ...).
        engine: an engine already loaded (kept for the pipeline's life), or None with ``load``.
        load: ``load() -> Engine``, called when the engine is needed and not loaded.
        hook: wraps every engine as it is loaded (inside the timing), see :data:`EngineHook`.
        backend / precision: what the engine runs on and computes in, known before it is loaded.
    Attributes:
        seconds, calls: time inside engine calls and their count since :func:`reset`.
        load_s, loads: time spent loading and how many loads, since :func:`reset`.
        footprint: memory figures of the last load and stage (:class:`Footprint`).
    """

    def __init__(self, name: str, engine: Engine | None = None, *, load: Callable[[], Engine] | None = None,
                 hook: "EngineHook | None" = None, backend: str | None = None, precision: str | None = None):
        if engine is None and load is None:
            raise EngineInputError(f"component '{name}': expected an engine or a load function, got neither")
        self.name, self._load, self._hook = name, load, hook
        self._raw: Engine | None = None
        self._engine: Engine | None = None
        self.seconds, self.calls, self.load_s, self.loads = 0.0, 0, 0.0, 0
        self.footprint = Footprint()
        self.backend, self.precision = backend, precision
        if engine is not None:
            self._attach(engine)

    def _attach(self, engine: Engine) -> None:
        self._raw = engine
        self._engine = self._hook(self.name, engine) if self._hook else engine
        self.inputs, self.outputs = engine.inputs, engine.outputs
        self.backend, self.precision = engine.backend, engine.precision

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def static(self) -> bool:
        """Whether the loaded engine compiles per call shape (OpenVINO static shapes)."""
        return bool(getattr(self._raw, "static", False))

    @property
    def engine(self) -> Engine:
        """The (hooked) engine, loaded now if it is not."""
        if self._engine is None:
            self.footprint.before_load()
            start = time.perf_counter()
            self._attach(self._load())
            self.load_s += time.perf_counter() - start
            self.loads += 1
            self.footprint.after_load()
        return self._engine

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        engine = self.engine
        start = time.perf_counter()
        try:
            return engine(feeds)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def input(self, name: str):
        for spec in self.engine.inputs:
            if spec.name == name:
                return spec
        raise EngineInputError(f"engine '{self.name}': expected an input '{name}', has {[s.name for s in self.inputs]}")

    def trim(self) -> None:
        """Let a loaded engine free its intermediate buffers (activations) until its next call,
        keeping its weights: what default mode does when a component's stage ends, so the peak holds
        one stage's activations, not every component's (engines without ``release_buffers`` keep them)."""
        release = getattr(self._raw, "release_buffers", None)
        if release is not None:
            release()

    def release(self) -> None:
        """Close and drop the engine (and its hook's wrapper) so its memory goes back to the OS;
        the next call loads it again. Nothing happens to an engine given at construction (it has no
        ``load`` to come back from) or to one not loaded."""
        if self._load is None or self._raw is None:
            return
        self.footprint.at_release()
        raw, self._raw, self._engine = self._raw, None, None
        close = getattr(raw, "close", None)
        if close is not None:
            close()
        del raw
        free_memory()
        self.footprint.released = rss_bytes()


@dataclass
class Footprint:
    """What a component's stage cost in resident memory (bytes; None where the OS does not say).

    Attributes:
        base: process RSS just before the component loaded.
        resident: RSS growth across the load (its weights and compiled buffers).
        peak: the process's peak RSS reached while it was loaded, when it rose during that time
            (then ``peak - base`` is the stage's weights plus activations); None when the process
            had been higher before (the stage then stayed under that earlier peak).
        released: process RSS right after it was released (shows the memory went back).
    """

    base: int | None = None
    resident: int | None = None
    peak: int | None = None
    released: int | None = None
    _hwm_before: int | None = None

    def before_load(self) -> None:
        self.base, self._hwm_before, self.peak = rss_bytes(), peak_rss_bytes(), None

    def after_load(self) -> None:
        rss = rss_bytes()
        self.resident = None if rss is None or self.base is None else max(rss - self.base, 0)

    def at_release(self) -> None:
        hwm = peak_rss_bytes()
        self.peak = hwm if self._hwm_before is not None and hwm > self._hwm_before else None

    @property
    def stage(self) -> int | None:
        """Bytes the stage added above its base at its peak (weights + activations), if measured."""
        return None if self.peak is None or self.base is None else self.peak - self.base


EngineHook = Callable[[str, Engine], Engine]
"""Wraps each engine a pipeline loads: ``hook(component name, engine) -> engine`` (recording
calibration feeds, counting calls). Given when the pipeline is built, never swapped in later; in
low-memory mode it is called at every load of a component."""


def load_components(artifact: Artifact, names: list[str], *, backend: str | None, precision: str | None,
                    device: str | None = None, engine_hook: EngineHook | None = None,
                    compute: str | None = None, shapes: str = "auto",
                    memory: str = "default") -> dict[str, TimedEngine]:
    """The named components of an artifact as timed engines on one backend.

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
        memory: :class:`~edgegen.types.MemoryMode`: "default" loads every engine now; "low" loads
            none: each loads when first called and frees on ``release()``.
    Raises:
        EngineInputError naming the argument, BackendUnavailableError (bf16 or static shapes off
        OpenVINO), ArtifactError.
    """
    mode = memory_mode(memory)
    precision, hint = variant_and_hint(precision, compute)
    try:
        shapes = parse_enum(ShapeMode, shapes, "shapes")
    except ValueError as exc:
        raise EngineInputError(str(exc)) from None
    backend = backend or default_backend()
    loaders = _loaders(artifact, names, backend=backend, precision=precision, device=device, compute=hint,
                       shapes=shapes)
    engines = {name: TimedEngine(name, load=load, hook=engine_hook, backend=backend, precision=variant)
               for name, (load, variant) in loaders.items()}
    if mode is MemoryMode.default:
        for engine in engines.values():
            engine.engine  # load now: default mode pays every load at Pipeline.load
    return engines


def memory_mode(memory: str) -> MemoryMode:
    """:class:`~edgegen.types.MemoryMode` from its name; EngineInputError naming ``memory`` otherwise."""
    try:
        return parse_enum(MemoryMode, memory, "memory")
    except ValueError as exc:
        raise EngineInputError(str(exc)) from None


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


def _loaders(artifact: Artifact, names: list[str], *, backend: str, precision: str | None, device: str | None,
             compute: ComputeHint, shapes: ShapeMode) -> dict[str, tuple[Callable[[], Engine], str]]:
    """Per component: (a function loading its engine, the precision that engine computes in)."""
    if compute is ComputeHint.bf16 and backend != "openvino":
        raise BackendUnavailableError(backend, None, "compute bf16: expected backend openvino (it computes "
                                      "fp32 graphs in BF16 on CPUs that support it)")
    if shapes is ShapeMode.static and backend != "openvino":
        raise BackendUnavailableError(backend, None, "shapes static: expected backend openvino (the others "
                                      "run their graphs as built)")
    if backend == "tensorrt":
        return _tensorrt_components(artifact, names, precision)
    loaders = {}
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
        loaders[name] = (partial(load_engine, path, backend, precision=hint, device=device, **options), hint)
    return loaders


def _tensorrt_components(artifact: Artifact, names: list[str],
                         precision: str | None) -> dict[str, tuple[Callable[[], Engine], str]]:
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
    paths = {name: find_engine(artifact, name, precision, device) for name in names}  # every missing one now
    return {name: (partial(TensorRTEngine, path, precision=precision), precision) for name, path in paths.items()}


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
    per = {name: {"seconds": e.seconds, "calls": e.calls, "load_s": e.load_s, "loads": e.loads}
           for name, e in engines.items()}
    inside = sum(e.seconds for e in engines.values())
    loading = sum(e.load_s for e in engines.values())
    return {"total_s": total, "engines": per, "engine_s": inside, "load_s": loading, "outside_s": total - inside}


def reset(engines: Mapping[str, TimedEngine]) -> None:
    for e in engines.values():
        e.seconds, e.calls, e.load_s, e.loads = 0.0, 0, 0.0, 0


@dataclass(frozen=True)
class MemoryReport:
    """Where a pipeline's memory went, from the OS's figures (bytes).

    Attributes:
        peak: the process's peak RSS so far (``VmHWM``).
        component: (name, RSS growth when it loaded) of the largest component, or None.
        stage: low-memory mode: (name, bytes above the RSS before it loaded at its peak, that RSS)
            of the largest stage that raised the process's peak: its weights plus activations,
            what low mode's peak should be over the base; None when no stage was measured.
    """

    peak: int
    component: tuple[str, int] | None
    stage: tuple[str, int, int] | None

    def line(self) -> str:
        """e.g. "peak memory 1.01 GiB (process), largest component unet 0.35 GiB; largest stage unet
        0.66 GiB (weights + activations) over a 0.14 GiB base"."""
        text = f"peak memory {self.peak / 2**30:.2f} GiB (process)"
        if self.component is not None:
            text += f", largest component {self.component[0]} {self.component[1] / 2**30:.2f} GiB"
        if self.stage is not None:
            name, size, base = self.stage
            text += (f"; largest stage {name} {size / 2**30:.2f} GiB (weights + activations) "
                     f"over a {base / 2**30:.2f} GiB base")
        return text


def memory_report(engines: Mapping[str, TimedEngine]) -> MemoryReport:
    """The :class:`MemoryReport` of a pipeline's engines (``pipe.engines``) and this process."""
    loaded = [(name, e.footprint.resident) for name, e in engines.items() if e.footprint.resident is not None]
    staged = [(name, e.footprint.stage, e.footprint.base) for name, e in engines.items()
              if e.footprint.stage is not None]
    return MemoryReport(peak_rss_bytes(), max(loaded, key=lambda t: t[1], default=None),
                        max(staged, key=lambda t: t[1], default=None))
