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

:class:`CFGDenoiser` is guidance as a denoiser around a denoiser (k-diffusion's ``CFGDenoiser``):
it owns the batching of the two branches and the interval, for every conditioned model.

Guidance as an input (Luo et al. 2023, "Latent Consistency Models", sec. 4.2; Meng et al. 2023):
an LCM-distilled U-Net learnt the guided prediction for a scale given as a sinusoidal embedding
(:func:`guidance_scale_embedding`, fed with the condition); it runs once per step with no
unconditional branch, so the conditional feeds carry the embedding and no CFG happens here.
"""

from __future__ import annotations

from typing import Literal, Mapping

import numpy as np

from .denoiser import Denoised, Denoiser
from .errors import EngineInputError

Feeds = Mapping[str, np.ndarray]


def needs_unconditional(guidance_scale: float) -> bool:
    """Whether the unconditional branch has to run: every scale but exactly 1."""
    return guidance_scale != 1.0


def guidance_scale_embedding(guidance_scale: float, dim: int, batch: int) -> np.ndarray:
    """The w-embedding an LCM-distilled U-Net takes as ``timestep_cond``.

    Equal to diffusers' ``LatentConsistencyModelPipeline.get_guidance_scale_embedding`` of
    ``w = guidance_scale - 1`` (the pipeline's Imagen-style scale minus one; VDM's sinusoidal
    embedding): ``[sin(1000 w f), cos(1000 w f)]`` with ``f_i = exp(-i log(10000) / (dim/2 - 1))``,
    ``i < dim // 2``, zero-padded to ``dim`` when odd; float32 arithmetic as diffusers.

    Args:
        guidance_scale: the scale as ``guidance_scale`` elsewhere (LCM's default 8.5; 1 is w = 0).
        dim: the U-Net's ``time_cond_proj_dim``, >= 4.
        batch: rows (one per image; all images share the scale).
    Returns:
        (batch, dim) float32 in [-1, 1].
    Raises:
        ValueError: ``dim`` below 4 (the frequency spacing divides by ``dim // 2 - 1``).
    """
    if dim < 4:
        raise ValueError(f"guidance embedding dim: expected >= 4, got {dim}")
    half = dim // 2
    w = np.float32(guidance_scale - 1) * np.float32(1000.0)
    step = np.log(np.float32(10000.0)) / np.float32(half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -step).astype(np.float32)
    angles = w * freqs
    emb = np.concatenate([np.sin(angles), np.cos(angles), np.zeros(dim % 2, np.float32)]).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(emb, (batch, dim)))


def check_interval(interval) -> tuple[float, float]:
    """``(sigma_lo, sigma_hi)`` as floats; ValueError unless ``0 <= lo < hi``."""
    lo, hi = (float(v) for v in interval)
    if not 0 <= lo < hi:
        raise ValueError(f"guidance_interval: expected (sigma_lo, sigma_hi) with 0 <= lo < hi, got {tuple(interval)}")
    return lo, hi


def batch_mode(engine_batch, batch: int) -> Literal["joint", "split"]:
    """How to run both branches for ``batch`` images on a U-Net whose batch dim is ``engine_batch``.

    Returns ``joint`` (one call of 2B: dynamic batch or fixed at 2B) or ``split`` (two calls of B:
    fixed at B). Raises EngineInputError for any other fixed batch.
    """
    if not isinstance(engine_batch, int) or engine_batch == 2 * batch:
        return "joint"
    if engine_batch == batch:
        return "split"
    raise EngineInputError(f"unet engine: batch is fixed at {engine_batch}; expected {batch} or {2 * batch} "
                           f"for {batch} image(s)")


class CFGDenoiser:
    """``denoise(x, sigma) -> Denoised`` with classifier-free guidance around a :class:`Denoiser`.

    Args:
        denoiser: the model's denoiser; its ``predict`` runs the branches, its ``clip`` the result
            (diffusers clips the guided prediction, not each branch).
        cond: the condition's feeds for B images, e.g. ``encoder_hidden_states`` (B, 77, D) float32
            or ``class_labels`` (B,) int64.
        uncond: the same feeds for the unconditional branch, or None for no guidance.
        guidance_scale: w; the guided estimate is ``uncond + w * (cond - uncond)``, for x0 and eps
            alike (both are affine in the network output, so this equals guiding the output).
        mode: ``joint`` or ``split`` (:func:`batch_mode`).
        interval: (sigma_lo, sigma_hi]: guide only there, the conditional branch alone elsewhere;
            None guides every step.
    """

    def __init__(self, denoiser: Denoiser, cond: Feeds, uncond: Feeds | None, guidance_scale: float, *,
                 mode: Literal["joint", "split"] = "joint", interval: tuple[float, float] | None = None):
        self.denoiser, self.cond, self.uncond = denoiser, dict(cond), None if uncond is None else dict(uncond)
        self.guidance_scale, self.mode = np.float32(guidance_scale), mode
        self.interval = None if interval is None else check_interval(interval)
        if self.uncond is not None and mode == "joint":
            self._both = {k: np.concatenate([self.uncond[k], v]) for k, v in self.cond.items()}

    def guides(self, sigma: float) -> bool:
        """Whether guidance applies at ``sigma``."""
        if self.uncond is None:
            return False
        return self.interval is None or self.interval[0] < float(sigma) <= self.interval[1]

    def __call__(self, x: np.ndarray, sigma: float) -> Denoised:
        """Guided estimates for ``x`` (B, C, H, W) float32 in sigma space."""
        if not self.guides(sigma):
            return self.denoiser(x, sigma, self.cond)
        if self.mode == "joint":
            both = self.denoiser.predict(np.concatenate([x, x]), sigma, self._both)
            b = x.shape[0]
            u, c = Denoised(both.x0[:b], both.eps[:b]), Denoised(both.x0[b:], both.eps[b:])
        else:
            u, c = self.denoiser.predict(x, sigma, self.uncond), self.denoiser.predict(x, sigma, self.cond)
        w = self.guidance_scale
        return self.denoiser.clip(Denoised(u.x0 + w * (c.x0 - u.x0), u.eps + w * (c.eps - u.eps)))
