"""Quality metrics: one home for the parity gates, the INT8 gates, ``edgegen bench`` and the demo.

* :func:`error_figures` - max-abs / relative error and PSNR of an output against its reference
  (the parity gates of export and compile);
* :func:`psnr`, :func:`ssim`, :func:`image_figures` - image quality against a reference image
  (the INT8 quality gate, bench's "vs FP32" columns);
* :func:`softmax`, :func:`classify`, :func:`agreement` - a classifier's confidence and its
  agreement with requested classes (the demo, bench's ``--metric-model``);
* :func:`frechet_distance` - the Fréchet distance of two feature sets (as FID).

Numpy only at import. SSIM needs scikit-image and the Fréchet distance scipy (the ``metrics``
extra, which the ``openvino``, ``export`` and ``bench`` extras include); a missing one raises
:class:`~edgegen.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import importlib
import statistics
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import EdgegenError, MissingDependencyError

# PSNR of identical images is infinite; image gates and reports cap it here (JSON has no infinity).
PSNR_CAP_DB = 100.0


def _require(module: str, what: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(package, what=what, extra="metrics") from None


def psnr(reference: np.ndarray, candidate: np.ndarray, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``.

    The same formula as scikit-image's ``peak_signal_noise_ratio`` (computed in float64), without
    needing scikit-image (the parity gates run in the base install).

    Args:
        reference, candidate: arrays of one shape, any real dtype.
        data_range: the peak value range (1.0 for images in [0, 1]); must be > 0.
    Returns:
        PSNR in dB; ``inf`` when the arrays are equal.
    Raises:
        EdgegenError: shapes differ or ``data_range`` <= 0.
    """
    ref, got = _pair(reference, candidate)
    if not data_range > 0:
        raise EdgegenError(f"PSNR data_range must be > 0, got {data_range}")
    mse = float(np.mean((ref - got) ** 2)) if ref.size else 0.0
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def _pair(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        raise EdgegenError(f"shape mismatch: expected {ref.shape}, got {got.shape}")
    return ref, got


def error_figures(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None | bool]:
    """How far a model output is from its reference (the parity gates' figures).

    Args:
        reference, candidate: arrays of one shape, any real dtype (compared in float64).
    Returns:
        ``max_abs``: max |reference - candidate|; ``max_rel``: max_abs / max|reference| (max_abs
        when the reference is all zero); ``psnr_db``: PSNR in dB with the reference's value range
        (max - min) as the peak, None when the arrays are equal; ``finite``: candidate all finite.
    Raises:
        EdgegenError: shapes differ.
    """
    ref, got = _pair(reference, candidate)
    err = np.abs(ref - got)
    max_abs = float(err.max()) if err.size else 0.0
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    value_range = float(ref.max() - ref.min()) if ref.size else 0.0
    value = psnr(ref, got, data_range=max(value_range, 1e-12))
    return {"max_abs": max_abs, "max_rel": max_abs / peak if peak else max_abs,
            "psnr_db": None if value == float("inf") else value, "finite": bool(np.isfinite(got).all())}


def ssim(reference: np.ndarray, candidate: np.ndarray, *, data_range: float = 1.0) -> float:
    """Mean structural similarity of two (H, W, C) images (Wang et al. 2004; scikit-image).

    scikit-image's ``structural_similarity`` with its uniform 7x7 window, narrowed to the
    largest odd size that fits images smaller than 7 pixels.

    Args:
        reference, candidate: (H, W, C) arrays, values in [0, data_range].
        data_range: the value range (1.0 for images in [0, 1]).
    Returns:
        SSIM in [-1, 1] (1 = identical).
    Raises:
        EdgegenError: shapes differ or an image is smaller than 3x3.
        MissingDependencyError: scikit-image is not installed.
    """
    metrics = _require("skimage.metrics", "SSIM", "scikit-image")
    ref, got = _pair(reference, candidate)
    side = min(7, *ref.shape[:2])
    if side < 3:
        raise EdgegenError(f"SSIM needs images of at least 3x3 pixels, got {ref.shape[:2]}")
    return float(metrics.structural_similarity(ref, got, data_range=data_range, channel_axis=-1,
                                               win_size=side if side % 2 else side - 1))


def image_figures(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> dict:
    """PSNR and SSIM of image pairs (the INT8 quality gate and bench's "vs FP32" columns).

    Args:
        reference, candidate: equally long sequences of (H, W, C) float images in [0, 1].
    Returns:
        ``{"psnr_db": {"median", "mean", "min"}, "ssim": {"mean", "min"}, "images": N}``; PSNR in
        dB, capped at :data:`PSNR_CAP_DB` (identical images give the cap).
    Raises:
        EdgegenError: the sequences are empty or of different lengths, or a pair's shapes differ.
        MissingDependencyError: scikit-image is not installed.
    """
    if len(reference) != len(candidate) or not len(reference):
        raise EdgegenError(f"image_figures expects two equally long, non-empty image lists, "
                           f"got {len(reference)} and {len(candidate)}")
    psnrs = [min(PSNR_CAP_DB, psnr(a, b, data_range=1.0)) for a, b in zip(reference, candidate)]
    ssims = [ssim(a, b, data_range=1.0) for a, b in zip(reference, candidate)]
    return {"psnr_db": {"median": statistics.median(psnrs), "mean": float(np.mean(psnrs)), "min": float(np.min(psnrs))},
            "ssim": {"mean": float(np.mean(ssims)), "min": float(np.min(ssims))}, "images": len(psnrs)}


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Probabilities from logits or log-probabilities, numerically stable (max subtracted).

    Args:
        logits: any real array; ``axis`` holds the classes.
    Returns:
        float64 array of the same shape, non-negative, summing to 1 along ``axis``.
    """
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@dataclass(frozen=True)
class ClassifierScores:
    """What a classifier says about a batch of B images.

    Attributes:
        confidence: (B,) float64 in [0, 1], the top class's softmax probability.
        classes: (B,) int64, the top class.
        features: (B, D) float32 penultimate features when the classifier has a second output
            (for :func:`frechet_distance`), else None.
    """

    confidence: np.ndarray
    classes: np.ndarray
    features: np.ndarray | None = None


def classify(engine, images: np.ndarray) -> ClassifierScores:
    """Score (B, H, W, C) images in [0, 1] with a classifier engine.

    The engine (an :class:`edgegen.runtimes.Engine`) takes one input (N, C', H', W') float32 in
    [0, 1]; its first output holds logits or log-probabilities (N, classes), an optional second
    output features (N, D). Images of another size are resized bilinearly (Pillow); one-channel
    images are repeated for a three-channel classifier.

    Raises:
        EdgegenError: the channels cannot be matched (e.g. RGB images, one-channel classifier).
    """
    spec = engine.inputs[0]
    channels, height, width = spec.shape[1:]
    batch = _fit_images(np.asarray(images, dtype=np.float32), (channels, height, width))
    values = list(engine({spec.name: batch}).values())
    probs = softmax(values[0], axis=1)
    return ClassifierScores(probs.max(1), probs.argmax(1), values[1] if len(values) > 1 else None)


def _fit_images(images: np.ndarray, chw: tuple) -> np.ndarray:
    """(B, H, W, C) float32 -> (B, C', H', W') float32 contiguous, resized where sizes differ."""
    channels, height, width = chw
    b, h, w, c = images.shape
    if c != channels and not (c == 1 and channels == 3):
        raise EdgegenError(f"classifier expects {channels}-channel images, got {c}-channel images")
    if isinstance(height, int) and isinstance(width, int) and (h, w) != (height, width):
        from PIL import Image

        images = np.stack([np.stack([np.asarray(Image.fromarray(im[..., k], mode="F").resize((width, height),
                                                                                                Image.BILINEAR))
                                     for k in range(c)], axis=-1) for im in images])
    if c != channels:
        images = np.repeat(images, channels, axis=-1)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


def agreement(classes: np.ndarray, requested: np.ndarray) -> dict:
    """How often a classifier sees the requested class.

    Args:
        classes: (B,) int, the predicted classes; requested: (B,) int, the classes asked for.
    Returns:
        ``{"agreement": share in [0, 1], "per_class": {str(c): share}}`` over the requested classes.
    Raises:
        EdgegenError: the arrays have different shapes or are empty.
    """
    classes, requested = np.asarray(classes), np.asarray(requested)
    if classes.shape != requested.shape or not classes.size:
        raise EdgegenError(f"agreement expects two equal, non-empty (B,) arrays, got {classes.shape} "
                           f"and {requested.shape}")
    return {"agreement": float((classes == requested).mean()),
            "per_class": {str(c): float((classes[requested == c] == c).mean()) for c in np.unique(requested)}}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula; Heusel et al. 2017).

    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 sqrtm(S_a S_b))``, with scipy's ``sqrtm``. Few samples
    give singular covariances; the real part of sqrtm is still the usable estimate.

    Args:
        a: (N, D) features; b: (M, D) features; N, M >= 2.
    Returns:
        the distance (>= 0 up to rounding), in squared feature units.
    Raises:
        EdgegenError: feature dimensions differ or a set has fewer than 2 rows.
        MissingDependencyError: scipy is not installed.
    """
    linalg = _require("scipy.linalg", "the Fréchet distance", "scipy")
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise EdgegenError(f"frechet_distance expects (N, D) and (M, D) features with N, M >= 2, "
                           f"got {a.shape} and {b.shape}")
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # disp is deprecated since scipy 1.16; without it older scipy prints
        try:
            covmean = linalg.sqrtm(s1 @ s2, disp=False)[0]
        except TypeError:  # scipy >= 1.18: disp removed, never prints
            covmean = linalg.sqrtm(s1 @ s2)
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean.real))
