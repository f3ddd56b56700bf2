"""Classifier-free guidance (Ho & Salimans 2022).

``guided = eps_uncond + guidance_scale * (eps_cond - eps_uncond)``: scale 1 is the
conditional model alone (the unconditional pass can be skipped), 0 the unconditional one,
and > 1 pushes samples toward the condition (Stable Diffusion's default is 7.5).
"""

from __future__ import annotations

import numpy as np


def classifier_free_guidance(eps_uncond: np.ndarray, eps_cond: np.ndarray, guidance_scale: float) -> np.ndarray:
    """Combine the two branches. Both (B, C, H, W) float32; returns the same shape and dtype."""
    return eps_uncond + np.float32(guidance_scale) * (eps_cond - eps_uncond)


def needs_unconditional(guidance_scale: float) -> bool:
    """Whether the unconditional branch has to run: every scale but exactly 1."""
    return guidance_scale != 1.0
