"""Cheap previews of a diffusion run: a linear latent -> RGB projection of the x0 estimate.

A Stable Diffusion latent pixel is close to a linear function of the colour of the 8x8 image
block it decodes to (the observation behind the SD 1.x "latent to RGB" factors of A1111 and
ComfyUI's ``latent_rgb_factors``). edgegen does not hard-code one model's factors: the export fits
``rgb = x0 @ matrix + bias`` by least squares against the artifact's own VAE decoder on random
latents (:func:`fit_projection`) and stores it in the manifest (``preview``), so any latent space
(SD 1.x, 2.x, another channel count) gets its own. A preview then costs one (C x 3) matrix
product per latent pixel and no engine call (:func:`project`).

This module never imports torch: the export passes a decode function built on the torch VAE, a
runtime fit (artifacts exported before previews existed) passes the ``vae_decoder`` engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EngineInputError
from .images import save_png, to_uint8
from .metrics import psnr

Decode = Callable[[np.ndarray], np.ndarray]


def _fit_latents(rng: np.random.Generator, count: int, channels: int, size: int) -> np.ndarray:
    """(count, C, size, size) float32 latents with x0-like statistics: smooth blobs plus fine noise."""
    blobs = rng.standard_normal((count, channels, size // 4, size // 4), dtype=np.float32)
    smooth = blobs.repeat(4, axis=2).repeat(4, axis=3)
    return smooth + np.float32(0.3) * rng.standard_normal(smooth.shape, dtype=np.float32)


def _block_mean(image: np.ndarray, f: int) -> np.ndarray:
    """(B, 3, h*f, w*f) -> (B, 3, h, w): the mean of each f x f block."""
    b, c, hh, ww = image.shape
    return image.reshape(b, c, hh // f, f, ww // f, f).mean(axis=(3, 5))


def _pairs(decode: Decode, x0: np.ndarray, scale_factor: int, scaling_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) latent pixels and (N, 3) block-mean decoded colours (in the decoder's output range)."""
    image = np.asarray(decode(np.ascontiguousarray(x0 / np.float32(scaling_factor))), dtype=np.float64)
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[2:] != tuple(s * scale_factor for s in x0.shape[2:]):
        raise EngineInputError(f"decoder output: expected (B, 3, {x0.shape[2] * scale_factor}, "
                               f"{x0.shape[3] * scale_factor}), got {tuple(image.shape)}")
    rgb = _block_mean(image, scale_factor)
    return (x0.transpose(0, 2, 3, 1).reshape(-1, x0.shape[1]).astype(np.float64),
            rgb.transpose(0, 2, 3, 1).reshape(-1, 3))


def fit_projection(decode: Decode, *, channels: int, scale_factor: int, scaling_factor: float,
                   output_range: tuple[float, float] = (-1.0, 1.0), samples: int = 8, size: int = 16,
                   seed: int = 0) -> dict:
    """Fit the linear latent -> RGB projection of a VAE decoder by least squares.

    Args:
        decode: (B, C, h, w) float32 latents divided by ``scaling_factor`` (what the decoder
            graph takes) -> (B, 3, h*f, w*f) float image in ``output_range``.
        channels: C, the latent channels; scale_factor: f, pixels per latent pixel.
        scaling_factor: SD's latent scaling (0.18215 for SD 1.x): the fit is on the U-Net's x0.
        samples: latents of ``size`` x ``size`` to fit on (as many again, other seeds, measure it).
    Returns:
        the manifest's ``preview`` record: ``{"matrix": C x 3 list, "bias": 3 list, "psnr_db": float}``,
        psnr_db of the projection against the decoded f x f block means on held-out latents, both
        mapped to [0, 1] (higher is better; only its order of magnitude matters for a preview).
    Raises:
        EngineInputError: the decoder's output is not (B, 3, h*f, w*f).
    """
    rng = np.random.default_rng(seed)
    x, y = _pairs(decode, _fit_latents(rng, samples, channels, size), scale_factor, scaling_factor)
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    matrix, bias = solution[:-1], solution[-1]
    hx, hy = _pairs(decode, _fit_latents(rng, samples, channels, size), scale_factor, scaling_factor)
    lo, hi = output_range
    unit = lambda v: np.clip((v - lo) / (hi - lo), 0, 1)  # noqa: E731
    score = psnr(unit(hy), unit(hx @ matrix + bias), data_range=1.0)
    return {"matrix": matrix.astype(float).tolist(), "bias": bias.astype(float).tolist(),
            "psnr_db": float(min(score, 99.0))}


def project(x0: np.ndarray, matrix, bias, *, output_range: tuple[float, float] = (-1.0, 1.0),
            upscale: int = 1) -> np.ndarray:
    """The preview of x0 estimates: (B, C, h, w) float32 latents -> (B, h*k, w*k, 3) float32 in [0, 1].

    Args:
        x0: the U-Net's clean-latent estimate (what ``callback(step, sigma, x0)`` receives).
        matrix, bias: the manifest's ``preview`` record (C x 3 and 3 numbers).
        output_range: the decoder's image range, mapped to [0, 1] then clipped.
        upscale: k, nearest-neighbour repeat per latent pixel (the VAE's scale factor gives the
            image size; 1 keeps the latent size).
    Raises:
        EngineInputError: x0 is not (B, C, h, w) with C the matrix's rows.
    """
    m = np.asarray(matrix, np.float32)
    if x0.ndim != 4 or x0.shape[1] != m.shape[0]:
        raise EngineInputError(f"x0: expected (B, {m.shape[0]}, h, w) latents, got {tuple(x0.shape)}")
    rgb = np.einsum("bchw,cr->bhwr", x0.astype(np.float32), m) + np.asarray(bias, np.float32)
    lo, hi = output_range
    rgb = np.clip((rgb - np.float32(lo)) / np.float32(hi - lo), 0, 1)
    if upscale > 1:
        rgb = rgb.repeat(upscale, axis=1).repeat(upscale, axis=2)
    return rgb.astype(np.float32)


def save_previews(out_dir: str | Path, images: np.ndarray, step: int, start: int = 0) -> list[Path]:
    """Write (B, H, W, 3) float32 [0, 1] previews as ``preview-NNNN-stepSS.png``, atomically.

    ``start`` numbers the first image as :meth:`Generation.save` does (``image-NNNN.png``); ``step``
    is the 1-based sampling step. Returns the paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save_png(out / f"preview-{i:04d}-step{step:02d}.png", image, {"preview_step": str(step)})
            for i, image in enumerate(to_uint8(images), start=start)]
