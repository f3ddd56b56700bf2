"""TensorRT optimization profiles, per-engine specs and engine-cache keys, as plain data (no GPU needed).

A profile gives every dynamic input a (min, opt, max) shape. They are derived from the
artifact's named dims (``batch``, ``latent_height``, ...) and what the user asks for: image
height / width, images per call, and whether classifier-free guidance doubles the U-Net batch.
:func:`engine_specs` puts, per component, the graph inputs, their dynamic axes and the profile
side by side in one flat :class:`EngineSpec` (TensorRT's demo ``BaseModel`` keeps them so).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

from ..errors import EdgegenError
from ..runtimes.base import TensorSpec
from ..runtimes.tensorrt import DeviceInfo
from ..types import Precision

if TYPE_CHECKING:
    from ..artifact import Artifact

Shape = tuple[int, ...]

MAX_PROMPT_WINDOWS = 3
"""Default number of 75-token prompt windows engines accept (225 prompt tokens): a long prompt is
encoded window by window (:meth:`edgegen.tokenizer.ClipTokenizer.chunks`), so the text encoder sees
``batch * windows`` rows and the U-Net's ``encoder_hidden_states`` ``windows * 77`` tokens."""


@dataclass(frozen=True)
class ShapeRange:
    """Sizes of the named dims at a profile's min, opt and max points."""

    min: Mapping[str, int]
    opt: Mapping[str, int]
    max: Mapping[str, int]


def shape_range(*, family: str, component: str, height: int, width: int, batch: int = 1, cfg: bool = True,
                min_height: int | None = None, max_height: int | None = None, min_width: int | None = None,
                max_width: int | None = None, min_batch: int | None = None, max_batch: int | None = None,
                scale_factor: int = 8, sequence: int = 77, prompt_windows: int = MAX_PROMPT_WINDOWS) -> ShapeRange:
    """Named-dim sizes for one component.

    Args:
        height, width: the image size to optimise for (``opt``), in pixels.
        batch: images per pipeline call; the U-Net of a text-to-image or class-conditional
            pipeline sees ``2 * batch`` when ``cfg`` (both guidance branches in one call). Pass
            ``cfg=False`` for an unconditional U-Net.
        min_/max_height/width/batch: the range the engine must accept (default: opt only; the
            minimum batch defaults to one image).
        sequence: text-encoder tokens per prompt window (CLIP: 77).
        prompt_windows: the most prompt windows a call may use (>= 1). Prompts and negative prompts
            are encoded in separate text-encoder calls of ``images * windows`` rows each, so the
            text encoder's max batch is ``max_batch * prompt_windows``; the U-Net's ``sequence``
            dim (``encoder_hidden_states``) spans ``sequence`` to ``prompt_windows * sequence``.
            Opt stays at one window. Components without those dims ignore it.
    Raises:
        EdgegenError: sizes not multiples of ``scale_factor``, min > opt > max, or prompt_windows < 1.
    """
    for name, value in (("height", height), ("width", width), ("min_height", min_height), ("max_height", max_height),
                        ("min_width", min_width), ("max_width", max_width)):
        if value is not None and value % scale_factor:
            raise EdgegenError(f"{name}: expected a multiple of {scale_factor}, got {value}")
    h = (min_height or height, height, max_height or height)
    w = (min_width or width, width, max_width or width)
    if isinstance(prompt_windows, bool) or not isinstance(prompt_windows, int) or prompt_windows < 1:
        raise EdgegenError(f"prompt_windows: expected an integer >= 1, got {prompt_windows!r}")
    mult = 2 if (cfg and component == "unet") else 1
    b = (mult * (min_batch or 1), mult * batch, mult * (max_batch or batch))
    for name, (lo, opt, hi) in (("height", h), ("width", w), ("batch", b)):
        if not lo <= opt <= hi:
            raise EdgegenError(f"{name} range: expected min <= opt <= max, got {lo}, {opt}, {hi}")
    if component == "text_encoder":
        b = (b[0], b[1], b[2] * prompt_windows)
    seq = (sequence, sequence, sequence * prompt_windows)

    def point(i: int) -> dict[str, int]:
        return {"batch": b[i], "latent_height": h[i] // scale_factor, "latent_width": w[i] // scale_factor,
                "height": h[i], "width": w[i], "sequence": seq[i], "channels": 3}

    return ShapeRange(point(0), point(1), point(2))


def profile_request(*, default_height: int, default_width: int, min: Sequence[int] | None = None,
                    opt: Sequence[int] | None = None, max: Sequence[int] | None = None) -> dict[str, int]:
    """``shape_range`` keyword arguments from ``--min/--opt/--max HEIGHT,WIDTH[,BATCH]``.

    Sizes are image pixels and images per pipeline call; ``opt`` defaults to the artifact's
    image size and one image, ``min`` and ``max`` to ``opt``.
    Raises EdgegenError for a point that is not 2 or 3 positive integers.
    """
    points = {}
    for label, point in (("min", min), ("opt", opt), ("max", max)):
        if point is not None and (len(point) not in (2, 3) or any(int(v) <= 0 for v in point)):
            raise EdgegenError(f"--{label}: expected HEIGHT,WIDTH[,BATCH] (positive integers), got {tuple(point)}")
        points[label] = tuple(int(v) for v in point) if point is not None else None
    o = points["opt"] or (default_height, default_width, 1)
    o = (*o, 1) if len(o) == 2 else o
    lo = points["min"] or o
    hi = points["max"] or o
    lo, hi = (*lo, 1) if len(lo) == 2 else lo, (*hi, o[2]) if len(hi) == 2 else hi
    return {"height": o[0], "width": o[1], "batch": o[2], "min_height": lo[0], "min_width": lo[1],
            "min_batch": lo[2], "max_height": hi[0], "max_width": hi[1], "max_batch": hi[2]}


def profile_shapes(inputs: Sequence[TensorSpec], sizes: ShapeRange) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shapes per input, from a component's graph inputs (``Component.inputs``).

    Raises EdgegenError for a named dim the range does not cover.
    """
    out = {}
    for spec in inputs:
        shapes = []
        for point in (sizes.min, sizes.opt, sizes.max):
            dims = []
            for d in spec.shape:
                if isinstance(d, int):
                    dims.append(d)
                elif d in point:
                    dims.append(int(point[d]))
                else:
                    raise EdgegenError(f"input '{spec.name}': no size for dynamic dim '{d}' "
                                       f"(known: {sorted(point)})")
            shapes.append(tuple(dims))
        out[spec.name] = tuple(shapes)
    return out


def cache_key(device: DeviceInfo, *, onnx_sha256: str, precision: str,
              profiles: Mapping[str, tuple[Shape, Shape, Shape]], fp32_layers: Sequence[str] = ()) -> str:
    """A stable hex key for an engine built from one ONNX file for one device, precision, profile
    and set of layer types forced to FP32 (an FP16 build with and without them differ)."""
    payload = json.dumps({"gpu": device.gpu_name, "cc": device.compute_capability, "trt": device.tensorrt_version,
                          "onnx": onnx_sha256, "precision": precision, "fp32_layers": sorted(fp32_layers),
                          "profiles": {k: [list(s) for s in v] for k, v in sorted(profiles.items())}},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def explain_mismatch(wanted: DeviceInfo, cached: Mapping[str, str]) -> str | None:
    """One line saying why a cached engine cannot be used here, or None when it can."""
    diffs = [f"{label} {cached.get(key)!r} != {getattr(wanted, key)!r}"
             for key, label in (("gpu_name", "GPU"), ("compute_capability", "compute capability"),
                                ("tensorrt_version", "TensorRT"))
             if str(cached.get(key)) != str(getattr(wanted, key))]
    return ("cached engine was built for another device or TensorRT (" + "; ".join(diffs) + "): rebuilding") if diffs else None


@dataclass(frozen=True)
class EngineSpec:
    """Everything one engine is built from, flat and side by side.

    Attributes:
        component: the manifest component ("unet", "vae_decoder", ...).
        onnx: the ONNX file built from (the QDQ variant for INT8).
        precision: what the engine computes in.
        inputs: the graph inputs, in graph order (named dims are dynamic).
        dynamic_axes: ``{input: {axis: dim name}}`` for the dynamic axes only.
        profile: ``{input: (min, opt, max) shape}`` for every input: the optimization profile.
        request: the ``--min/--opt/--max`` request the profile came from (:func:`profile_request`)
            and ``prompt_windows``.
    """

    component: str
    onnx: Path
    precision: Precision
    inputs: tuple[TensorSpec, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    profile: Mapping[str, tuple[Shape, Shape, Shape]]
    request: Mapping[str, int]


def engine_specs(artifact: "Artifact", precision: Precision, *, min: Sequence[int] | None = None,
                 opt: Sequence[int] | None = None, max: Sequence[int] | None = None,
                 prompt_windows: int = MAX_PROMPT_WINDOWS) -> list[EngineSpec]:
    """One :class:`EngineSpec` per component of ``artifact`` for ``precision``.

    ``min/opt/max``: ``(HEIGHT, WIDTH[, BATCH])`` in pixels and images per pipeline call
    (:func:`profile_request`; default: the artifact's image size, one image). The U-Net of a
    text-to-image or class-conditional artifact gets two rows per image (classifier-free guidance).
    ``prompt_windows``: the most 75-token prompt windows a call may use (:func:`shape_range`).
    Raises EdgegenError for a malformed point or range; ArtifactError when INT8 is asked for a
    component without an ONNX Runtime QDQ variant.
    """
    spec = artifact.spec
    request = profile_request(default_height=spec.image.height, default_width=spec.image.width,
                              min=min, opt=opt, max=max)
    request["prompt_windows"] = prompt_windows
    specs = []
    for name, entry in spec.components.items():
        sizes = shape_range(family=artifact.family, component=name, cfg=spec.guided, scale_factor=spec.scale_factor,
                            **request)
        inputs = entry.inputs
        onnx = (artifact.component_path(name, "int8", "onnxruntime") if precision is Precision.int8
                else artifact.component_path(name))
        specs.append(EngineSpec(
            component=name, onnx=onnx, precision=precision, inputs=inputs,
            dynamic_axes={t.name: {i: d for i, d in enumerate(t.shape) if isinstance(d, str)} for t in inputs},
            profile=profile_shapes(inputs, sizes), request=request))
    return specs
