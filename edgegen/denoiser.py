"""The U-Net as a denoiser: ``denoise(x, sigma) -> (x0, eps)`` in k-diffusion's sigma space.

Samplers (:mod:`edgegen.samplers`) work on ``x = x_t / sqrt(alpha_cumprod)`` at noise level
``sigma = sqrt((1 - alpha_cumprod) / alpha_cumprod)`` (Karras et al. 2022's variance-exploding
view of a variance-preserving model) and never see how the network is parametrized. This module
owns that (k-diffusion ``external.py`` ``CompVisDenoiser`` / ``DiscreteEpsDDPMDenoiser``):

- input scaling ``c_in = 1 / sqrt(sigma**2 + 1)`` (diffusers' ``scale_model_input``; the
  network sees the variance-preserving ``x_t``);
- the sigma -> timestep lookup: the run's own table (the timesteps diffusers feeds for those
  sigmas: integer, rounded or fractional per sampler), else log-sigma interpolation; cast to the
  engine's timestep dtype (integers are rounded);
- the prediction type: ``epsilon``, ``v_prediction`` (Salimans & Ho 2022) or ``sample``;
- x0 clipping (diffusers' ``clip_sample``), applied after guidance as diffusers' ``step`` does.

Why (x0, eps) and not x0 alone: DDPM / DDIM with ``clip_sample`` step with the *clipped* x0 and
the *unclipped* noise estimate (diffusers' ``use_clipped_model_output=False``); returning both
keeps that exact. Without clipping ``eps == (x - x0) / sigma``, k-diffusion's ``to_d``.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import numpy as np

from .errors import ScheduleError
from .schedules import PREDICTION_TYPES, NoiseSchedule

# feeds -> raw network output (B, C, H, W) float32; feeds hold "sample", "timestep" and any condition.
Network = Callable[[Mapping[str, np.ndarray]], np.ndarray]


class Denoised(NamedTuple):
    """A denoiser's estimates at one noise level, both (B, C, H, W) float32.

    Attributes:
        x0: the clean-sample estimate (clipped when the denoiser clips).
        eps: the noise estimate in sigma space, ``x = x0_unclipped + sigma * eps``.
    """

    x0: np.ndarray
    eps: np.ndarray


class Denoiser:
    """Wrap a network into ``denoise(x, sigma, cond=None) -> Denoised``.

    Args:
        network: ``network(feeds) -> output``; feeds are ``sample`` (B, C, H, W) float32 (the
            VP ``x_t``), ``timestep`` (B,) of ``timestep_dtype`` and the entries of ``cond``.
        schedule: the training schedule (prediction type, sigma -> timestep interpolation).
        sigmas, timesteps: (N,) the run's noise levels and the timesteps fed at each.
        timestep_dtype: the engine's timestep dtype; integer dtypes get rounded timesteps.
        clip_sample_range: clip x0 to [-r, r] when given (DDPM / DDIM ``clip_sample``).
    Raises:
        ScheduleError: an unknown prediction type.
    """

    def __init__(self, network: Network, schedule: NoiseSchedule, *, sigmas: np.ndarray, timesteps: np.ndarray,
                 timestep_dtype=np.int64, clip_sample_range: float | None = None):
        if schedule.prediction_type not in PREDICTION_TYPES:
            raise ScheduleError(f"prediction_type: expected one of {', '.join(PREDICTION_TYPES)}, "
                                f"got '{schedule.prediction_type}'")
        self.network, self.schedule = network, schedule
        self.prediction_type = schedule.prediction_type
        self._sigmas = np.asarray(sigmas, dtype=np.float32)
        self._timesteps = np.asarray(timesteps)
        self.timestep_dtype = np.dtype(timestep_dtype)
        self.clip_sample_range = clip_sample_range

    def timestep(self, sigma: float) -> np.ndarray:
        """The scalar timestep (of ``timestep_dtype``) the network sees at ``sigma``."""
        hit = np.flatnonzero(self._sigmas == np.float32(sigma))
        t = self._timesteps[hit[0]] if hit.size else self.schedule.sigma_to_t(np.float64(sigma))
        if self.timestep_dtype.kind in "iu":
            t = np.round(t)
        return np.asarray(t).astype(self.timestep_dtype)

    def predict(self, x: np.ndarray, sigma: float, cond: Mapping[str, np.ndarray] | None = None) -> Denoised:
        """Unclipped estimates for ``x`` (B, C, H, W) float32 in sigma space at ``sigma`` > 0."""
        s = np.float32(sigma)
        c_in = np.float32(1) / (s * s + np.float32(1)) ** np.float32(0.5)
        t = np.full((x.shape[0],), self.timestep(sigma), dtype=self.timestep_dtype)
        out = self.network({"sample": x * c_in, "timestep": t, **(cond or {})})
        if self.prediction_type == "epsilon":
            return Denoised(x - s * out, out)
        if self.prediction_type == "v_prediction":
            x0 = out * (-s * c_in) + x * (c_in * c_in)
            return Denoised(x0, out * c_in + x * (s * c_in * c_in))
        return Denoised(out, (x - out) / s)

    def clip(self, d: Denoised) -> Denoised:
        """``d`` with x0 clipped to [-r, r] when the denoiser clips; eps unchanged."""
        if self.clip_sample_range is None:
            return d
        r = self.clip_sample_range
        return Denoised(np.clip(d.x0, -r, r), d.eps)

    def __call__(self, x: np.ndarray, sigma: float, cond: Mapping[str, np.ndarray] | None = None) -> Denoised:
        """Clipped estimates; see :meth:`predict`."""
        return self.clip(self.predict(x, sigma, cond))
