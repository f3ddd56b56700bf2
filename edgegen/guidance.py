"""Classifier-free guidance (Ho & Salimans 2022).

``guided = eps_uncond + guidance_scale * (eps_cond - eps_uncond)``: scale 1 is the
conditional model alone (the unconditional pass can be skipped), 0 the unconditional one,
and > 1 pushes samples toward the condition (Stable Diffusion's default is 7.5).

Guidance interval (Kynkäänniemi et al. 2024, "Applying Guidance in a Limited Interval Improves
Sample and Distribution Quality in Diffusion Models"): guidance only at steps whose noise level
``sigma = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])`` lies in ``(sigma_lo, sigma_hi]``,
the conditional model alone elsewhere (and no unconditional pass there). At high noise levels
guidance can pull every sample to a few class prototypes; the interval keeps its effect on
class identity and detail.
"""

from __future__ import annotations

import numpy as np


def classifier_free_guidance(eps_uncond: np.ndarray, eps_cond: np.ndarray, guidance_scale: float) -> np.ndarray:
    """Combine the two branches. Both (B, C, H, W) float32; returns the same shape and dtype."""
    return eps_uncond + np.float32(guidance_scale) * (eps_cond - eps_uncond)


def needs_unconditional(guidance_scale: float) -> bool:
    """Whether the unconditional branch has to run: every scale but exactly 1."""
    return guidance_scale != 1.0


def guidance_steps(sigmas: np.ndarray, guidance_scale: float, interval: tuple[float, float] | None) -> np.ndarray:
    """Per step, whether CFG applies: (steps,) bool from the steps' sigmas (>= 0, any units the
    interval uses). ``interval`` None means every step.

    Raises ValueError for an interval that is not ``0 <= lo < hi``.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if not needs_unconditional(guidance_scale):
        return np.zeros(sigmas.shape, dtype=bool)
    if interval is None:
        return np.ones(sigmas.shape, dtype=bool)
    lo, hi = check_interval(interval)
    return (sigmas > lo) & (sigmas <= hi)


def check_interval(interval) -> tuple[float, float]:
    """``(sigma_lo, sigma_hi)`` as floats; ValueError unless ``0 <= lo < hi``."""
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo < hi:
        raise ValueError(f"guidance_interval: expected (sigma_lo, sigma_hi) with 0 <= lo < hi, got {tuple(interval)}")
    return lo, hi
