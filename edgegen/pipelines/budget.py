"""Automatic tiled decoding: decode in tiles when the whole image's decode would not fit a memory budget.

The decode's activation memory is estimated by OpenVINO shape inference
(:func:`edgegen.runtimes.openvino.activation_estimate`, the estimate ``edgegen run`` checks sizes
with) at the requested latent shape and scaled by the tile's area; the budget is process RSS:

- given (``memory_budget=`` bytes): the process may reach that much while decoding;
- low-memory mode: the process's peak so far, i.e. the U-Net stage's (weights + activations):
  the decode must not raise the peak;
- default mode: RSS now plus ``MemAvailable`` (what the machine can still give), checked only
  off the artifact's own size and batch (the export decoded that).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from ..memory import available_memory, peak_rss_bytes, rss_bytes
from ..tiling import choose_tile_size
from ..types import MemoryMode

# The decode's activations in multiples of its largest intermediate tensor. Twice is the lower bound
# ``edgegen run`` refuses sizes with. OpenVINO's CPU plugin compiled for dynamic shapes was measured
# holding 5.1x (768 px) and 6.2x (512 px) for the small SD VAE decoder, so dynamic decoders plan with
# 6.5x; compiled static it plans its buffers ahead: the SD 1.5 VAE decoder at 512 px held 0.75 GiB
# FP32 / ~0.7 GiB INT8 for a 0.25 GiB largest tensor (2.8-3.0x), so static decoders plan with 3.5x
# (docs/memory.md).
ACTIVATION_FACTOR = 6.5
STATIC_ACTIVATION_FACTOR = 3.5
GIB = 2**30


@lru_cache(maxsize=16)
def bytes_per_latent(path: Path, shape: tuple[int, ...], tensor: str, fused_attention: bool,
                     static: bool = False) -> float | None:
    """Activation bytes per latent pixel of one image for the decoder at ``path`` (compiled for
    static shapes or not), or None without OpenVINO (no estimate); cached per (file, shape)."""
    if importlib.util.find_spec("openvino") is None:
        return None
    from ..runtimes.openvino import activation_estimate

    est = activation_estimate(path, {tensor: shape}, fused_attention=fused_attention)
    b, _, h, w = shape
    return (STATIC_ACTIVATION_FACTOR if static else ACTIVATION_FACTOR) * est.nbytes / (b * h * w)


def decode_budget(mode: MemoryMode, budget: int | None, *, own_size: bool) -> tuple[int | None, str]:
    """(process RSS bytes the decode may reach, where that figure comes from); (None, why) when
    no limit applies. Call it with the decoder loaded (its weights are then in RSS)."""
    if budget is not None:
        return budget, "memory_budget"
    available, rss = available_memory(), rss_bytes()
    if mode is MemoryMode.low:
        room = "" if available is None or rss is None or rss + available >= peak_rss_bytes() else " (capped)"
        limit = peak_rss_bytes() if room == "" else rss + available
        return limit, f"low memory: the peak of the stages before, the U-Net's{room}"
    if own_size or available is None or rss is None:
        return None, "default memory: the artifact's own size" if own_size else "default memory: MemAvailable unknown"
    return rss + available, "default memory: RSS + MemAvailable"


def auto_tile(path: Path, latent_shape: tuple[int, int, int, int], *, tensor: str, scale_factor: int,
              out_channels: int, budget: int | None, source: str, fused_attention: bool,
              static: bool = False) -> tuple[int | None, dict]:
    """(tile size in pixels or None for a whole decode, what ``Generation.info`` records about it).

    Args:
        path: the decoder's model file; tensor: its latent input's name.
        latent_shape: (B, C, h, w) latents to decode.
        budget / source: from :func:`decode_budget`.
        static: the decoder runs compiled for static shapes (OpenVINO plans its buffers: less memory).
    """
    if budget is None:
        return None, {"tile_size": None, "tile_reason": f"whole ({source})"}
    rate = bytes_per_latent(Path(path), tuple(int(d) for d in latent_shape), tensor, fused_attention, static)
    if rate is None:
        return None, {"tile_size": None, "tile_reason": "whole (no activation estimate without OpenVINO)"}
    rss = rss_bytes() or 0
    tile, need = choose_tile_size(latent_shape, scale_factor=scale_factor, out_channels=out_channels,
                                  bytes_per_latent=rate, available=budget - rss)
    b, _, h, w = latent_shape
    whole = rate * b * h * w
    figures = (f"budget {budget / GIB:.2f} GiB ({source}), resident {rss / GIB:.2f} GiB, whole decode of "
               f"{h * scale_factor}x{w * scale_factor} needs ~{whole / GIB:.2f} GiB")
    if tile is None:
        return None, {"tile_size": None, "tile_reason": f"whole: {figures}"}
    fits = "" if need <= budget - rss else " (still over: the smallest tile offered)"
    return tile, {"tile_size": tile, "tile_reason": f"auto: {figures}; tiles of {tile} px need ~{need / GIB:.2f} GiB{fits}"}
