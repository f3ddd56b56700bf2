"""Tiled decoding: run a latent -> image decoder tile by tile and blend the overlaps linearly.

The decoder sees one (B, C, t, t) latent tile at a time, so its activation memory is bounded by
the tile, not the image; only the (B, C_out, H, W) float32 output and one weight map span the
whole image. Neighbouring tiles overlap by a quarter tile (in latents) and are blended in pixel
space with linear (feathered) ramps across each overlap, as diffusers' ``AutoencoderKL.tiled_decode``
and stable-diffusion.cpp's ``sd_tiling`` do; a tile that covers the image reproduces the untiled
decode exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import EngineInputError, InputError

Decode = Callable[[np.ndarray], np.ndarray]
MIN_TILE = 128  # pixels: the smallest tile automatic tiling offers (smaller tiles are mostly overlap)


def check_tile_size(tile_size: object, scale_factor: int) -> int:
    """Return ``tile_size`` (pixels) if it is a positive integer multiple of ``scale_factor``.

    Raises:
        InputError: naming tile_size, the scale factor and the value received.
    """
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)) or tile_size <= 0 \
            or tile_size % scale_factor:
        raise InputError(f"tile_size: expected a positive multiple of the scale factor {scale_factor} px, "
                         f"got {tile_size!r}")
    return int(tile_size)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` with overlaps of at least ``overlap``.

    Tiles are spread evenly (starts rounded from a linspace), the first at 0 and the last ending at
    ``size``; one tile at 0 when ``tile >= size``.
    """
    if tile >= size:
        return [0]
    count = -(-(size - overlap) // (tile - overlap))  # ceil: strides of at most tile - overlap
    return sorted({int(round(s)) for s in np.linspace(0, size - tile, max(count, 2))})


def _ramp(length: int, before: int, after: int) -> np.ndarray:
    """(length,) float32 weights in (0, 1]: linear ramps over ``before`` / ``after`` pixels at the ends."""
    x = np.arange(length, dtype=np.float32) + np.float32(0.5)
    w = np.ones(length, np.float32)
    if before:
        w = np.minimum(w, x / np.float32(before))
    if after:
        w = np.minimum(w, (np.float32(length) - x) / np.float32(after))
    return w


def _axis(size: int, tile: int, overlap: int, f: int) -> list[tuple[int, int, np.ndarray]]:
    """[(latent start, latent length, pixel weights)] along one axis."""
    starts = tile_starts(size, tile, overlap)
    n = min(tile, size)
    out = []
    for i, s in enumerate(starts):
        before = (starts[i - 1] + n - s) * f if i else 0
        after = (s + n - starts[i + 1]) * f if i + 1 < len(starts) else 0
        out.append((s, n, _ramp(n * f, before, after)))
    return out


def decode_tiled(decode: Decode, latents: np.ndarray, *, tile_size: int, scale_factor: int,
                 overlap: float = 0.25) -> np.ndarray:
    """Decode ``latents`` tile by tile with linearly blended overlaps.

    Args:
        decode: (B, C, t_h, t_w) float32 latents -> (B, C_out, t_h*f, t_w*f) float image, the
            engine call (any value range; blending is linear, done before range mapping).
        latents: (B, C, h, w) float32 latents, already scaled as the decoder expects.
        tile_size: tile edge in **pixels**, a positive multiple of ``scale_factor``; tiles are
            ``tile_size // scale_factor`` latents square (smaller where the image is).
        scale_factor: f, pixels per latent (8 for SD's VAE and TAEF2).
        overlap: share of a tile that neighbours overlap, 0 <= overlap < 1 (default 1/4).
    Returns:
        (B, C_out, h*f, w*f) float32 image, equal to ``decode(latents)`` when the tile covers it.
    Raises:
        InputError: tile_size not a positive multiple of scale_factor, or overlap outside [0, 1).
        EngineInputError: the decoder's output is not (B, C_out, t_h*f, t_w*f).
    """
    check_tile_size(tile_size, scale_factor)
    if not 0 <= overlap < 1:
        raise InputError(f"overlap: expected a share of the tile in [0, 1), got {overlap}")
    tile = tile_size // scale_factor
    b, _, h, w = latents.shape
    if tile >= h and tile >= w:
        return np.asarray(decode(latents), dtype=np.float32)
    lap = min(int(round(tile * overlap)), tile - 1)
    rows, cols = _axis(h, tile, lap, scale_factor), _axis(w, tile, lap, scale_factor)
    out = weight = None
    for y, th, wy in rows:
        for x, tw, wx in cols:
            part = decode(np.ascontiguousarray(latents[:, :, y:y + th, x:x + tw]))
            if part.ndim != 4 or part.shape[0] != b or part.shape[2:] != (th * scale_factor, tw * scale_factor):
                raise EngineInputError(f"decoder output: expected (B={b}, C, {th * scale_factor}, "
                                       f"{tw * scale_factor}) for a {th}x{tw} latent tile, got {tuple(part.shape)}")
            if out is None:
                out = np.zeros((b, part.shape[1], h * scale_factor, w * scale_factor), np.float32)
                weight = np.zeros((h * scale_factor, w * scale_factor), np.float32)
            mask = wy[:, None] * wx[None, :]
            py, px = slice(y * scale_factor, (y + th) * scale_factor), slice(x * scale_factor, (x + tw) * scale_factor)
            out[:, :, py, px] += part * mask
            weight[py, px] += mask
    out /= weight
    return out


def choose_tile_size(latent_shape: tuple[int, int, int, int], *, scale_factor: int, out_channels: int,
                     bytes_per_latent: float, available: int, min_tile: int = MIN_TILE) -> tuple[int | None, int]:
    """The largest tile whose decode fits in ``available`` bytes, halving from the whole image.

    Args:
        latent_shape: (B, C, h, w) of the latents to decode.
        scale_factor: f, pixels per latent.
        out_channels: the decoder's image channels (the blended image and its weights span the
            whole image when tiled: ``4 * B * (2 * out_channels + 1) * H * W`` bytes with the
            [0, 1] copy).
        bytes_per_latent: activation bytes the decoder needs per latent pixel of one image (from
            :func:`edgegen.runtimes.openvino.activation_estimate`, linear in the area for a
            convolutional decoder).
        available: bytes the decode may use above what is resident.
        min_tile: the smallest tile offered, in pixels.
    Returns:
        (None, bytes) when the whole image fits, else (tile size in pixels, a multiple of
        ``scale_factor``, bytes it needs); ``min_tile`` (rounded up to ``scale_factor``) with its
        need when even that does not fit, so the caller can say by how much.
    """
    b, _, h, w = latent_shape
    whole = int(bytes_per_latent * b * h * w)
    if whole <= available:
        return None, whole
    image = 4 * b * (2 * out_channels + 1) * h * w * scale_factor ** 2
    smallest = -(-max(min_tile, scale_factor) // scale_factor)  # latents
    tile = max(h, w)
    while True:
        tile = max(tile // 2, smallest)
        need = int(bytes_per_latent * b * min(tile, h) * min(tile, w)) + image
        if need <= available or tile == smallest:
            return tile * scale_factor, need
