"""TensorRT optimization profiles and engine-cache keys, as plain data (no GPU needed).

A profile gives every dynamic input a (min, opt, max) shape. They are derived from the
artifact's named dims (``batch``, ``latent_height``, ...) and what the user asks for: image
height / width, images per call, and whether classifier-free guidance doubles the U-Net batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import EdgegenError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeRange:
    """Sizes of the named dims at a profile's min, opt and max points."""

    min: Mapping[str, int]
    opt: Mapping[str, int]
    max: Mapping[str, int]


def shape_range(*, family: str, component: str, height: int, width: int, batch: int = 1, cfg: bool = True,
                min_height: int | None = None, max_height: int | None = None, min_width: int | None = None,
                max_width: int | None = None, min_batch: int | None = None, max_batch: int | None = None,
                scale_factor: int = 8, sequence: int = 77) -> ShapeRange:
    """Named-dim sizes for one component.

    Args:
        height, width: the image size to optimise for (``opt``), in pixels.
        batch: images per pipeline call; the U-Net of a text-to-image or class-conditional
            pipeline sees ``2 * batch`` when ``cfg`` (both guidance branches in one call). Pass
            ``cfg=False`` for an unconditional U-Net.
        min_/max_height/width/batch: the range the engine must accept (default: opt only; the
            minimum batch defaults to one image).
    Raises:
        EdgegenError: sizes not multiples of ``scale_factor``, or min > opt > max.
    """
    for name, value in (("height", height), ("width", width), ("min_height", min_height), ("max_height", max_height),
                        ("min_width", min_width), ("max_width", max_width)):
        if value is not None and value % scale_factor:
            raise EdgegenError(f"{name}: expected a multiple of {scale_factor}, got {value}")
    h = (min_height or height, height, max_height or height)
    w = (min_width or width, width, max_width or width)
    mult = 2 if (cfg and component == "unet") else 1
    b = (mult * (min_batch or 1), mult * batch, mult * (max_batch or batch))
    for name, (lo, opt, hi) in (("height", h), ("width", w), ("batch", b)):
        if not lo <= opt <= hi:
            raise EdgegenError(f"{name} range: expected min <= opt <= max, got {lo}, {opt}, {hi}")

    def point(i: int) -> dict[str, int]:
        return {"batch": b[i], "latent_height": h[i] // scale_factor, "latent_width": w[i] // scale_factor,
                "height": h[i], "width": w[i], "sequence": sequence, "channels": 3}

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


def profile_shapes(inputs: Sequence[Mapping], sizes: ShapeRange) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shapes per input, from manifest inputs (``{"name", "shape", "dtype"}``).

    Raises EdgegenError for a named dim the range does not cover.
    """
    out = {}
    for spec in inputs:
        shapes = []
        for point in (sizes.min, sizes.opt, sizes.max):
            dims = []
            for d in spec["shape"]:
                if isinstance(d, int):
                    dims.append(d)
                elif d in point:
                    dims.append(int(point[d]))
                else:
                    raise EdgegenError(f"input '{spec['name']}': no size for dynamic dim '{d}' "
                                       f"(known: {sorted(point)})")
            shapes.append(tuple(dims))
        out[spec["name"]] = tuple(shapes)
    return out


@dataclass(frozen=True)
class DeviceInfo:
    """What makes a TensorRT engine valid: it only runs where all of these match."""

    gpu_name: str
    compute_capability: str  # "8.7" (Jetson Orin), "8.9" (Ada), "9.0" (Hopper)
    tensorrt_version: str


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
