"""Diffusion samplers as pure functions over explicit schedules.

Each sampler takes the network as ``model(x_t, i) -> output``: ``x_t`` is the network input
(B, C, H, W) float32 in the variance-preserving space of the training schedule (what diffusers
passes after ``scale_model_input``), ``i`` the step index into the schedule arrays, and
``output`` the raw prediction of the same shape (eps, v or x0 per ``prediction_type``).
All state is in the arguments; noise comes from an injectable ``noise(shape)`` callable
returning standard-normal float32, so a run is reproducible and comparable with diffusers
given the same draws.

References:
    DDPM: Ho et al. 2020, eq. 6-7 (posterior mean and variance).
    DDIM: Song et al. 2021, eq. 12 (eta interpolates DDIM (0) and DDPM-like (1) noise).
    Euler / Euler ancestral: Karras et al. 2022, algorithm 1 with no churn; k-diffusion's
    ``sample_euler`` / ``sample_euler_ancestral`` and ``get_ancestral_step``.
    In sigma space (x / sqrt(alpha_cumprod), sigma = sqrt((1 - a) / a)) a DDIM step with
    ``eta`` is an Euler-ancestral step with the same ``eta``; both use :func:`ancestral_step`,
    and ``tests/test_samplers.py`` proves the equivalence.
Numerical parity with diffusers' DDPM / DDIM / EulerDiscrete / EulerAncestralDiscrete
schedulers is tested to 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ScheduleError
from .schedules import NoiseSchedule

Model = Callable[[np.ndarray, int], np.ndarray]
Noise = Callable[[tuple[int, ...]], np.ndarray]
Callback = Callable[[int, np.ndarray], None]

SAMPLERS = ("ddpm", "ddim", "euler", "euler-a")


def gaussian_noise(rng: np.random.Generator) -> Noise:
    """A ``noise(shape)`` source drawing float32 N(0, 1) from a numpy generator."""
    return lambda shape: rng.standard_normal(shape, dtype=np.float32)


def split_prediction(output: np.ndarray, x_t: np.ndarray, alpha_cumprod: float,
                     prediction_type: str, clip_sample_range: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Turn a raw network output into (x0, eps) estimates in the VP space of ``x_t``.

    Args:
        output: raw prediction, same shape as ``x_t``.
        x_t: (B, C, H, W) float32 noisy sample at a step with ``alpha_cumprod``.
        alpha_cumprod: scalar in (0, 1].
        prediction_type: ``epsilon``, ``v_prediction`` or ``sample``.
        clip_sample_range: clip x0 to [-r, r] when given (eps is left as predicted,
            as diffusers does with ``use_clipped_model_output=False``).
    """
    a = np.float32(alpha_cumprod)
    sqrt_a, sqrt_b = a**0.5, (1 - a) ** 0.5
    if prediction_type == "epsilon":
        x0, eps = (x_t - sqrt_b * output) / sqrt_a, output
    elif prediction_type == "v_prediction":
        x0, eps = sqrt_a * x_t - sqrt_b * output, sqrt_a * output + sqrt_b * x_t
    elif prediction_type == "sample":
        x0, eps = output, (x_t - sqrt_a * output) / sqrt_b
    else:
        raise ScheduleError(f"prediction_type: expected epsilon, v_prediction or sample, got '{prediction_type}'")
    if clip_sample_range is not None:
        x0 = np.clip(x0, -clip_sample_range, clip_sample_range)
    return x0, eps


def ancestral_step(sigma_from: float, sigma_to: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step from ``sigma_from`` to ``sigma_to`` into a deterministic part and fresh noise.

    Returns:
        (sigma_down, sigma_up): step deterministically to ``sigma_down`` then add
        ``sigma_up * N(0, I)``; ``sigma_down**2 + sigma_up**2 == sigma_to**2``.
        ``eta=0`` gives (sigma_to, 0): plain Euler / DDIM.
    """
    if sigma_to == 0 or eta == 0:
        return float(sigma_to), 0.0
    # float32 on purpose: sigma_down cancels badly at large sigma_from, and diffusers'
    # float32 result is the reference.
    s_from, s_to = np.float32(sigma_from), np.float32(sigma_to)
    up = min(s_to, np.float32(eta) * (s_to**2 * (s_from**2 - s_to**2) / s_from**2) ** np.float32(0.5))
    return float((s_to**2 - up**2) ** np.float32(0.5)), float(up)


def sample_ddpm(model: Model, x: np.ndarray, alphas_cumprod: np.ndarray,
                alphas_cumprod_prev: np.ndarray, *, noise: Noise, prediction_type: str = "epsilon",
                clip_sample_range: float | None = None, variance_type: str = "fixed_small",
                final_noise: bool = False, callback: Callback | None = None) -> np.ndarray:
    """DDPM ancestral sampling with the posterior q(x_prev | x_t, x0) (Ho et al. 2020, eq. 7).

    Args:
        model: the network, see module docstring.
        x: (B, C, H, W) float32 initial noise, N(0, I) (DDPM's init sigma is 1).
        alphas_cumprod, alphas_cumprod_prev: (N,) float32 from ``NoiseSchedule.ddpm_alphas``.
        noise: standard-normal source, called once per step except the last.
        final_noise: also add noise on the last step; diffusers does so whenever the last
            timestep is above 0 (e.g. ``trailing`` spacing), which matters for ``fixed_large``.
        variance_type: ``fixed_small`` (beta tilde) or ``fixed_large`` (beta), with their
            ``_log`` variants computing the same standard deviation.
        callback: called as ``callback(i, x)`` after each step.
    Returns:
        (B, C, H, W) float32 x0 sample.
    """
    n = len(alphas_cumprod)
    for i in range(n):
        a, a_prev = np.float32(alphas_cumprod[i]), np.float32(alphas_cumprod_prev[i])
        x0, _ = split_prediction(model(x, i), x, a, prediction_type, clip_sample_range)
        beta_t, beta_prev = 1 - a, 1 - a_prev
        cur_alpha = a / a_prev
        cur_beta = 1 - cur_alpha
        x = (a_prev**0.5 * cur_beta / beta_t) * x0 + (cur_alpha**0.5 * beta_prev / beta_t) * x
        if i < n - 1 or final_noise:
            if variance_type.startswith("fixed_small"):
                var = max(beta_prev / beta_t * cur_beta, np.float32(1e-20))
            else:
                var = cur_beta
            x = x + var**0.5 * noise(x.shape)
        if callback is not None:
            callback(i, x)
    return x


def sample_ddim(model: Model, x: np.ndarray, alphas_cumprod: np.ndarray,
                alphas_cumprod_prev: np.ndarray, *, eta: float = 0.0, noise: Noise | None = None,
                prediction_type: str = "epsilon", clip_sample_range: float | None = None,
                callback: Callback | None = None) -> np.ndarray:
    """DDIM (Song et al. 2021, eq. 12), written as an ancestral step in sigma space.

    Args:
        x: (B, C, H, W) float32 initial noise, N(0, I).
        alphas_cumprod, alphas_cumprod_prev: (N,) float32 from ``NoiseSchedule.ddim_alphas``;
            they need not chain (diffusers' ``linspace`` spacing does not), so each step
            converts in and out of sigma space with its own pair.
        eta: 0 is deterministic DDIM, 1 adds DDPM-sized noise.
        noise: needed when ``eta > 0``; called on steps whose ``sigma_up > 0``.
    Returns:
        (B, C, H, W) float32 sample at ``alphas_cumprod_prev[-1]``.
    """
    if eta > 0 and noise is None:
        raise ValueError("sample_ddim: eta > 0 needs a noise source, got noise=None")
    for i in range(len(alphas_cumprod)):
        a, a_prev = np.float32(alphas_cumprod[i]), np.float32(alphas_cumprod_prev[i])
        x0, eps = split_prediction(model(x, i), x, a, prediction_type, clip_sample_range)
        sigma_from, sigma_to = ((1 - a) / a) ** 0.5, ((1 - a_prev) / a_prev) ** 0.5
        sigma_down, sigma_up = ancestral_step(sigma_from, sigma_to, eta)
        x_sigma = x0 + eps * np.float32(sigma_down)
        if sigma_up > 0:
            x_sigma = x_sigma + noise(x.shape) * np.float32(sigma_up)
        x = x_sigma * a_prev**0.5
        if callback is not None:
            callback(i, x)
    return x


def _split_sigma(output: np.ndarray, x: np.ndarray, sigma: np.float32, prediction_type: str) -> np.ndarray:
    """x0 from a raw output, for ``x`` in sigma space (EulerDiscreteScheduler's formulas)."""
    if prediction_type == "epsilon":
        return x - sigma * output
    if prediction_type == "v_prediction":
        return output * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
    if prediction_type == "sample":
        return output
    raise ScheduleError(f"prediction_type: expected epsilon, v_prediction or sample, got '{prediction_type}'")


def sample_euler_ancestral(model: Model, x: np.ndarray, sigmas: np.ndarray, *, eta: float = 1.0,
                           noise: Noise | None = None, prediction_type: str = "epsilon",
                           callback: Callback | None = None) -> np.ndarray:
    """Euler ancestral sampling in sigma space (k-diffusion ``sample_euler_ancestral``).

    Args:
        x: (B, C, H, W) float32 initial latents already scaled by the init noise sigma,
            i.e. ``N(0, I) * NoiseSchedule.init_noise_sigma(sigmas)``.
        sigmas: (N+1,) float32 decreasing noise levels ending at 0.
        eta: 1 is Euler ancestral, 0 is plain Euler (deterministic).
        noise: standard-normal source, needed when ``eta > 0``.
    The network sees ``x / sqrt(sigma**2 + 1)`` (diffusers' ``scale_model_input``).
    Returns:
        (B, C, H, W) float32 sample at ``sigmas[-1]``.
    """
    if eta > 0 and noise is None:
        raise ValueError("sample_euler_ancestral: eta > 0 needs a noise source, got noise=None")
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = np.float32(sigmas[i]), np.float32(sigmas[i + 1])
        output = model(x / (sigma**2 + 1) ** 0.5, i)
        x0 = _split_sigma(output, x, sigma, prediction_type)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x = x + (x - x0) / sigma * (np.float32(sigma_down) - sigma)
        if sigma_up > 0:
            x = x + noise(x.shape) * np.float32(sigma_up)
        if callback is not None:
            callback(i, x)
    return x


def sample_euler(model: Model, x: np.ndarray, sigmas: np.ndarray, *, prediction_type: str = "epsilon",
                 callback: Callback | None = None) -> np.ndarray:
    """Deterministic Euler (Karras et al. 2022, alg. 1, no churn): ``sample_euler_ancestral`` at eta 0."""
    return sample_euler_ancestral(model, x, sigmas, eta=0.0, prediction_type=prediction_type, callback=callback)


@dataclass(frozen=True)
class SamplingPlan:
    """Everything one sampling run needs, derived from a schedule, a sampler and a step count.

    Attributes:
        sampler: one of :data:`SAMPLERS`.
        timesteps: (N,) the values fed to the network at each step (int64 for ddpm/ddim,
            float32 for the Euler samplers, as diffusers).
        init_noise_sigma: multiply N(0, I) latents by this before sampling.
        alphas_cumprod, alphas_cumprod_prev: (N,) for ddpm/ddim, else None.
        sigmas: (N+1,) for the Euler samplers, else None.
    """

    sampler: str
    timesteps: np.ndarray
    init_noise_sigma: float
    alphas_cumprod: np.ndarray | None = None
    alphas_cumprod_prev: np.ndarray | None = None
    sigmas: np.ndarray | None = None

    @classmethod
    def build(cls, schedule: NoiseSchedule, sampler: str, num_inference_steps: int) -> "SamplingPlan":
        """Raises ScheduleError for an unknown sampler or a step count outside 1..T."""
        if sampler in ("ddpm", "ddim"):
            timesteps = schedule.timesteps(num_inference_steps)
            alphas = (schedule.ddpm_alphas if sampler == "ddpm" else schedule.ddim_alphas)(timesteps)
            return cls(sampler, timesteps, 1.0, *alphas)
        if sampler in ("euler", "euler-a"):
            timesteps = schedule.euler_timesteps(num_inference_steps)
            sigmas = schedule.sigmas(timesteps)
            return cls(sampler, timesteps, schedule.init_noise_sigma(sigmas), sigmas=sigmas)
        raise ScheduleError(f"sampler: expected one of {', '.join(SAMPLERS)}, got '{sampler}'")

    def run(self, model: Model, latents: np.ndarray, schedule: NoiseSchedule, *, eta: float = 0.0,
            noise: Noise | None = None, callback: Callback | None = None) -> np.ndarray:
        """Sample from N(0, I) ``latents`` (B, C, H, W) float32; returns x0 (B, C, H, W) float32.

        ``eta`` applies to ddim (default 0) and euler-a (where 0 means 1, its natural value).
        """
        x = latents.astype(np.float32, copy=True)
        if self.init_noise_sigma != 1.0:
            x *= np.float32(self.init_noise_sigma)
        pred = schedule.prediction_type
        if self.sampler == "ddpm":
            return sample_ddpm(model, x, self.alphas_cumprod, self.alphas_cumprod_prev, noise=noise,
                               prediction_type=pred, clip_sample_range=schedule.clip_sample_range,
                               variance_type=schedule.variance_type, final_noise=bool(self.timesteps[-1] > 0),
                               callback=callback)
        if self.sampler == "ddim":
            return sample_ddim(model, x, self.alphas_cumprod, self.alphas_cumprod_prev, eta=eta, noise=noise,
                               prediction_type=pred, clip_sample_range=schedule.clip_sample_range,
                               callback=callback)
        if self.sampler == "euler":
            return sample_euler(model, x, self.sigmas, prediction_type=pred, callback=callback)
        return sample_euler_ancestral(model, x, self.sigmas, eta=eta or 1.0, noise=noise,
                                      prediction_type=pred, callback=callback)
