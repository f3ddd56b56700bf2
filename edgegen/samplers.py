"""Diffusion samplers as pure functions over a denoiser and an explicit schedule.

Each sampler takes the network as a denoiser ``denoise(x, sigma) -> Denoised(x0, eps)``
(:mod:`edgegen.denoiser`, which owns the prediction type, input scaling, clipping and the
timestep lookup) and works in k-diffusion's sigma space: ``x`` (B, C, H, W) float32 at noise
level ``sigma`` is ``x0 + sigma * eps``, i.e. the VP ``x_t`` times ``sqrt(1 + sigma**2)``.
DDPM alone runs in VP space over ``alphas_cumprod`` (its posterior is written in them).
All state is in the arguments; noise comes from an injectable ``noise(shape)`` callable
returning standard-normal float32, so a run is reproducible and comparable with diffusers
given the same draws. ``callback(step, sigma, x0)`` is called after each step with the
denoiser's x0 estimate; returning ``False`` stops sampling and returns ``x`` as it is then.

References:
    DDPM: Ho et al. 2020, eq. 6-7 (posterior mean and variance).
    DDIM: Song et al. 2021, eq. 12 (eta interpolates DDIM (0) and DDPM-like (1) noise).
    Euler / Euler ancestral: Karras et al. 2022, algorithm 1 with no churn; k-diffusion's
    ``sample_euler`` / ``sample_euler_ancestral`` and ``get_ancestral_step``.
    In sigma space a DDIM step with ``eta`` is an Euler-ancestral step with the same ``eta``:
    both are :func:`sample_euler_ancestral`, and ``tests/test_samplers.py`` proves the
    equivalence against DDIM written in VP space (eq. 12).
    DPM-Solver++ 2M: Lu et al. 2022 ("DPM-Solver++", alg. 2, multistep second order, data
    prediction); k-diffusion's ``sample_dpmpp_2m``.
    LCM: Luo et al. 2023 ("Latent Consistency Models", alg. 3, multistep consistency sampling),
    diffusers' ``LCMScheduler``; its re-noising is an ancestral step to the next level with
    ``sigma_down = 0`` (``x = f + sigma_next z``).
    img2img: SDEdit (Meng et al. 2021): noise clean latents to an intermediate level and run the
    rest of the schedule (:meth:`SamplingPlan.truncated`, :meth:`SamplingPlan.start`).
Numerical parity with diffusers' DDPM / DDIM / EulerDiscrete / EulerAncestralDiscrete /
DPMSolverMultistep / LCM schedulers is tested to 1e-5.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .denoiser import Denoised
from .errors import ScheduleError
from .schedules import NoiseSchedule
from .types import Sampler, SigmaSchedule

Denoise = Callable[[np.ndarray, float], Denoised]
Noise = Callable[[tuple[int, ...]], np.ndarray]
# callback(step, sigma, x0_estimate) -> False to stop; None / True go on.
Callback = Callable[[int, float, np.ndarray], "bool | None"]

SAMPLERS = tuple(s.value for s in Sampler)


def gaussian_noise(rng: np.random.Generator) -> Noise:
    """A ``noise(shape)`` source drawing float32 N(0, 1) from a numpy generator."""
    return lambda shape: rng.standard_normal(shape, dtype=np.float32)


def _parse(enum, value, what: str):
    try:
        return enum(value)
    except ValueError:
        raise ScheduleError(f"{what}: expected one of {', '.join(m.value for m in enum)}, got '{value}'") from None


def _stop(callback: Callback | None, i: int, sigma, x0: np.ndarray) -> bool:
    return callback is not None and callback(i, float(sigma), x0) is False


def _needs_noise(eta: float, noise: Noise | None, name: str) -> None:
    if eta > 0 and noise is None:
        raise ValueError(f"{name}: eta > 0 needs a noise source, got noise=None")


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



def vp_sigma(alpha_cumprod) -> np.float32:
    """sigma = sqrt((1 - a) / a) in float32: the sigma-space noise level of ``alphas_cumprod`` a."""
    a = np.float32(alpha_cumprod)
    return ((np.float32(1) - a) / a) ** np.float32(0.5)


def sample_ddpm(denoise: Denoise, x: np.ndarray, alphas_cumprod: np.ndarray, alphas_cumprod_prev: np.ndarray, *,
                noise: Noise, variance_type: str = "fixed_small", final_noise: bool = False,
                callback: Callback | None = None) -> np.ndarray:
    """DDPM ancestral sampling with the posterior q(x_prev | x_t, x0) (Ho et al. 2020, eq. 7).

    Args:
        denoise: see module docstring; called at ``vp_sigma(alphas_cumprod[i])``.
        x: (B, C, H, W) float32 VP ``x_t``, initially N(0, I).
        alphas_cumprod, alphas_cumprod_prev: (N,) float32 from ``NoiseSchedule.ddpm_alphas``.
        noise: standard-normal source, called once per step except the last.
        variance_type: ``fixed_small`` (beta tilde) or ``fixed_large`` (beta), with their
            ``_log`` variants computing the same standard deviation.
        final_noise: also add noise on the last step; diffusers does so whenever the last
            timestep is above 0 (e.g. ``trailing`` spacing), which matters for ``fixed_large``.
    Returns:
        (B, C, H, W) float32 VP sample (x0 after the last step).
    """
    n = len(alphas_cumprod)
    for i in range(n):
        a, a_prev = np.float32(alphas_cumprod[i]), np.float32(alphas_cumprod_prev[i])
        sigma = vp_sigma(a)
        x0 = denoise(x / a**0.5, sigma).x0
        beta_t, beta_prev = 1 - a, 1 - a_prev
        cur_alpha = a / a_prev
        cur_beta = 1 - cur_alpha
        x = (a_prev**0.5 * cur_beta / beta_t) * x0 + (cur_alpha**0.5 * beta_prev / beta_t) * x
        if i < n - 1 or final_noise:
            var = max(beta_prev / beta_t * cur_beta, np.float32(1e-20)) if variance_type.startswith("fixed_small") \
                else cur_beta
            x = x + var**0.5 * noise(x.shape)
        if _stop(callback, i, sigma, x0):
            break
    return x


def sample_euler_ancestral(denoise: Denoise, x: np.ndarray, sigmas: np.ndarray, *, eta: float = 1.0,
                           noise: Noise | None = None, callback: Callback | None = None,
                           sigmas_to: np.ndarray | None = None) -> np.ndarray:
    """Euler ancestral sampling in sigma space (k-diffusion ``sample_euler_ancestral``); DDIM too.

    Each step denoises at ``sigmas[i]``, moves deterministically to ``sigma_down`` and adds
    ``sigma_up`` fresh noise (:func:`ancestral_step`), landing at ``sigmas_to[i]``.

    Args:
        x: (B, C, H, W) float32 at ``sigmas[0]`` in sigma space.
        sigmas: (N+1,) float32 decreasing noise levels; the last is where sampling ends.
        eta: 1 is Euler ancestral, 0 is plain Euler / deterministic DDIM.
        noise: standard-normal source, needed when ``eta > 0``.
        sigmas_to: (N,) where each step lands, default ``sigmas[1:]``. DDIM's ``linspace``
            spacing lands elsewhere than the next step starts (diffusers' ``prev_timestep``);
            ``x`` then moves to ``sigmas[i+1]`` keeping its VP value, as diffusers does.
    Returns:
        (B, C, H, W) float32 at ``sigmas[-1]`` in sigma space.
    """
    _needs_noise(eta, noise, "sample_euler_ancestral")
    for i in range(len(sigmas) - 1):
        sigma, nxt = np.float32(sigmas[i]), np.float32(sigmas[i + 1])
        target = nxt if sigmas_to is None else np.float32(sigmas_to[i])
        d = denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, target, eta)
        x = d.x0 + d.eps * np.float32(sigma_down)
        if sigma_up > 0:
            x = x + noise(x.shape) * np.float32(sigma_up)
        if target != nxt:
            x = x * ((1 + nxt * nxt) / (1 + target * target)) ** np.float32(0.5)
        if _stop(callback, i, sigma, d.x0):
            break
    return x


def sample_ddim(denoise: Denoise, x: np.ndarray, sigmas: np.ndarray, *, eta: float = 0.0,
                noise: Noise | None = None, callback: Callback | None = None,
                sigmas_to: np.ndarray | None = None) -> np.ndarray:
    """DDIM (Song et al. 2021, eq. 12) is Euler ancestral in sigma space with the same ``eta``
    (default 0, deterministic); arguments as :func:`sample_euler_ancestral`."""
    return sample_euler_ancestral(denoise, x, sigmas, eta=eta, noise=noise, callback=callback, sigmas_to=sigmas_to)


def sample_euler(denoise: Denoise, x: np.ndarray, sigmas: np.ndarray, *,
                 callback: Callback | None = None) -> np.ndarray:
    """Deterministic Euler (Karras et al. 2022, alg. 1, no churn): ``sample_euler_ancestral`` at eta 0."""
    return sample_euler_ancestral(denoise, x, sigmas, eta=0.0, callback=callback)


def sample_dpmpp_2m(denoise: Denoise, x: np.ndarray, sigmas: np.ndarray, *, first_order_final: bool = False,
                    callback: Callback | None = None) -> np.ndarray:
    """DPM-Solver++ 2M (Lu et al. 2022, alg. 2; k-diffusion ``sample_dpmpp_2m``), deterministic.

    In sigma space with ``lambda = -log(sigma)`` and ``h = lambda_next - lambda``, a step is
    ``x <- (sigma_next / sigma) x - expm1(-h) D`` with ``D`` the x0 estimate (first order, the
    first step) or ``D = x0 + (x0 - x0_prev) / (2 r)``, ``r = h_prev / h`` (second order).
    Equal to diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint) on the
    same sigmas; a step to sigma 0 returns the x0 estimate (first order).

    Args:
        x: (B, C, H, W) float32 at ``sigmas[0]`` in sigma space.
        sigmas: (N+1,) float32 decreasing, the last 0 or > 0 (diffusers' ``sigma_min``).
        first_order_final: make the last step first order also when it ends above 0
            (diffusers' ``euler_at_final``, or ``lower_order_final`` with fewer than 15 steps).
    Returns:
        (B, C, H, W) float32 at ``sigmas[-1]`` in sigma space.
    """
    n = len(sigmas) - 1
    old, h_prev = None, 0.0
    for i in range(n):
        sigma, nxt = float(sigmas[i]), float(sigmas[i + 1])
        d = denoise(x, np.float32(sigmas[i]))
        if nxt == 0:
            x = d.x0
        else:
            h = math.log(sigma / nxt)
            D = d.x0
            if old is not None and not (first_order_final and i == n - 1):
                D = d.x0 + np.float32(0.5 * h / h_prev) * (d.x0 - old)
            x = np.float32(nxt / sigma) * x - np.float32(math.expm1(-h)) * D
            h_prev = h
        old = d.x0
        if _stop(callback, i, sigma, d.x0):
            break
    return x


def sample_lcm(denoise: Denoise, x: np.ndarray, sigmas: np.ndarray, c_skip: np.ndarray, c_out: np.ndarray,
               *, noise: Noise | None, callback: Callback | None = None) -> np.ndarray:
    """Multistep latent consistency sampling (Luo et al. 2023, alg. 3; diffusers' ``LCMScheduler``).

    At each grid level the consistency function ``f = c_skip x_t + c_out x0`` maps the VP sample
    ``x_t = x / sqrt(1 + sigma**2)`` to a clean estimate (x0 from the denoiser, clipped when it
    clips); every step but the last re-noises it to the next grid level with fresh noise,
    ``x = f + sigma_next z`` (diffusers' ``sqrt(a_next) f + sqrt(1 - a_next) z`` in sigma space).
    The last step returns ``f`` (no noise: one step is one network call and no noise at all).
    ``callback`` sees ``f`` as the x0 estimate.

    Args:
        denoise: see module docstring.
        x: (B, C, H, W) float32 at ``sigmas[0]`` in sigma space.
        sigmas: (N+1,) float32 decreasing: the grid timesteps' noise levels
            (``NoiseSchedule.lcm_timesteps``), then 0.
        c_skip, c_out: (N,) float32 boundary scalings at those timesteps (:func:`lcm_boundary_scalings`).
        noise: standard-normal source, called once per step except the last (may be None for N = 1).
    Returns:
        (B, C, H, W) float32 clean sample (sigma 0, where sigma space is VP space: the latents to decode).
    Raises:
        ValueError: more than one step and no noise source.
    """
    n = len(sigmas) - 1
    if n > 1 and noise is None:
        raise ValueError(f"sample_lcm: {n} steps re-noise between steps and need a noise source, got noise=None")
    for i in range(n):
        sigma, nxt = np.float32(sigmas[i]), np.float32(sigmas[i + 1])
        x0 = denoise(x, sigma).x0
        x_t = x / (sigma * sigma + np.float32(1)) ** np.float32(0.5)
        f = np.float32(c_out[i]) * x0 + np.float32(c_skip[i]) * x_t
        x = f + nxt * noise(f.shape) if i < n - 1 else f
        if _stop(callback, i, sigma, f):
            break
    return x


def lcm_boundary_scalings(timesteps: np.ndarray, timestep_scaling: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """Consistency-model boundary scalings at ``timesteps`` (LCMScheduler's
    ``get_scalings_for_boundary_condition_discrete``; Song et al. 2023, eq. 7, sigma_data 0.5).

    With ``s = timestep * timestep_scaling``: ``c_skip = 0.25 / (s**2 + 0.25)``,
    ``c_out = s / sqrt(s**2 + 0.25)``, so ``c_skip -> 0`` and ``c_out -> 1`` away from t = 0.
    Returns:
        (c_skip, c_out), two float32 arrays shaped as ``timesteps`` (float32 as diffusers computes them).
    """
    s = np.asarray(timesteps).astype(np.float32) * np.float32(timestep_scaling)
    var = np.float32(0.5) ** 2
    return (var / (s * s + var)).astype(np.float32), (s / (s * s + var) ** np.float32(0.5)).astype(np.float32)


@dataclass(frozen=True)
class SamplingPlan:
    """Everything one sampling run needs, derived from a schedule, a sampler and a step count.

    Attributes:
        sampler: the algorithm.
        sigmas: (N+1,) float32 decreasing noise levels: where each step starts, then where
            sampling ends.
        timesteps: (N,) what the network is fed at ``sigmas[:-1]``, as diffusers feeds it
            (int64 for ddpm / ddim / dpmpp-2m / lcm, float32 for the Euler samplers).
        init_noise_sigma: diffusers' ``init_noise_sigma``: N(0, I) latents times this are the
            sampler's start, in VP space when ``vp`` else in sigma space.
        vp: whether diffusers' reference sampler holds VP samples (ddpm, ddim, dpmpp-2m, lcm).
        sigma_schedule: how ``sigmas`` are spaced.
        sigmas_to: DDIM: (N,) where each step lands (see :func:`sample_euler_ancestral`).
        alphas_cumprod, alphas_cumprod_prev: DDPM: (N,) float32; LCM: ``alphas_cumprod`` at its timesteps.
        final_noise: DDPM: noise on the last step too.
        first_order_final: DPM++ 2M: last step first order.
        timestep_scaling: LCM: the boundary scalings' factor (:func:`lcm_boundary_scalings` of
            ``timesteps``, so a plan cut to fewer steps keeps them aligned).
        clip: whether x0 is clipped (ddpm / ddim / lcm with ``clip_sample``; diffusers' other
            schedulers never clip).
    """

    sampler: Sampler
    sigmas: np.ndarray
    timesteps: np.ndarray
    init_noise_sigma: float
    vp: bool
    sigma_schedule: SigmaSchedule = SigmaSchedule.discrete
    sigmas_to: np.ndarray | None = None
    alphas_cumprod: np.ndarray | None = None
    alphas_cumprod_prev: np.ndarray | None = None
    final_noise: bool = False
    first_order_final: bool = False
    clip: bool = False
    variance_type: str = "fixed_small"
    timestep_scaling: float | None = None

    @classmethod
    def build(cls, schedule: NoiseSchedule, sampler: str | Sampler, num_inference_steps: int, *,
              sigmas: str | SigmaSchedule | None = None) -> "SamplingPlan":
        """Plan a run. ``sigmas`` None takes the config's (``use_karras_sigmas`` ...) for the
        Euler samplers and dpmpp-2m, discrete for ddpm / ddim / lcm.

        Raises:
            ScheduleError: an unknown sampler or sigma schedule, a step count outside 1..T (lcm:
                1..``original_inference_steps``), or Karras / exponential sigmas asked of ddpm / ddim / lcm.
        """
        sampler = _parse(Sampler, sampler, "sampler")
        fixed = sampler in (Sampler.ddpm, Sampler.ddim, Sampler.lcm)
        kind = _parse(SigmaSchedule, sigmas or ("discrete" if fixed else schedule.sigma_schedule), "sigmas")
        if fixed and kind != SigmaSchedule.discrete:
            raise ScheduleError(f"sigmas: {sampler.value} runs on the discrete training sigmas; expected discrete "
                                f"(karras / exponential need euler, euler-a or dpmpp-2m), got '{kind.value}'")
        if sampler == Sampler.lcm:
            return cls._lcm(schedule, num_inference_steps)
        if fixed:
            timesteps = schedule.timesteps(num_inference_steps)
            a_t, a_prev = (schedule.ddpm_alphas if sampler == Sampler.ddpm else schedule.ddim_alphas)(timesteps)
            at, to = vp_sigma(a_t), vp_sigma(a_prev)
            return cls(sampler, np.append(at, to[-1]).astype(np.float32), timesteps, 1.0, True,
                       sigmas_to=to.astype(np.float32), alphas_cumprod=a_t, alphas_cumprod_prev=a_prev,
                       final_noise=bool(timesteps[-1] > 0), clip=schedule.clip_sample_range is not None,
                       variance_type=schedule.variance_type)
        if sampler == Sampler.dpmpp_2m:
            timesteps, sig = schedule.dpm_sigmas(num_inference_steps, kind.value)
            low = schedule.euler_at_final or (schedule.lower_order_final and len(timesteps) < 15)
            return cls(sampler, sig, timesteps, 1.0, True, kind, first_order_final=low)
        timesteps, sig = schedule.euler_sigmas(num_inference_steps, kind.value)
        return cls(sampler, sig, timesteps, schedule.init_noise_sigma(sig), False, kind)

    @classmethod
    def _lcm(cls, schedule: NoiseSchedule, num_inference_steps: int) -> "SamplingPlan":
        timesteps = schedule.lcm_timesteps(num_inference_steps)
        a_t = schedule.alphas_cumprod[timesteps]
        return cls(Sampler.lcm, np.append(vp_sigma(a_t), np.float32(0)).astype(np.float32), timesteps, 1.0, True,
                   alphas_cumprod=a_t, clip=schedule.clip_sample_range is not None,
                   timestep_scaling=schedule.timestep_scaling)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def truncated(self, strength: float) -> "SamplingPlan":
        """The last ``int(N * strength)`` steps of this N-step plan: img2img's schedule (SDEdit,
        Meng et al. 2021), exactly as diffusers' ``StableDiffusionImg2ImgPipeline.get_timesteps``.

        ``t_start = N - min(int(N * strength), N)``; every per-step array starts at ``t_start``
        (each of edgegen's schedulers has diffusers ``order`` 1, and ``set_begin_index(t_start)``
        starts diffusers' scheduler there). What the full plan fixed stays: DDIM's landing points
        (``t - T // N``), DDPM's final noise, DPM++ 2M's first-order final step (diffusers reads
        ``len(timesteps)`` of the full schedule); the first truncated DPM++ step is first order
        (no previous model output), as diffusers' ``lower_order_nums`` 0.

        Args:
            strength: in (0, 1]; 1 runs every step from pure noise at the first level.
        Returns:
            a plan of ``int(N * strength)`` steps.
        Raises:
            ScheduleError: ``strength`` not a finite number in (0, 1], or too small to leave a step
                (``int(N * strength) == 0``).
        """
        n = self.steps
        if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or not 0 < strength <= 1:
            raise ScheduleError(f"strength: expected a number in (0, 1], got {strength!r}")
        keep = min(int(n * strength), n)
        if keep < 1:
            raise ScheduleError(f"strength: {strength:g} of {n} steps leaves int({n} * {strength:g}) = 0 steps; "
                                f"expected strength >= {1 / n:g} or more steps")
        t = n - keep

        def cut(a):
            return None if a is None else a[t:]

        return replace(self, sigmas=self.sigmas[t:], timesteps=self.timesteps[t:], sigmas_to=cut(self.sigmas_to),
                       alphas_cumprod=cut(self.alphas_cumprod), alphas_cumprod_prev=cut(self.alphas_cumprod_prev))

    def start(self, noise: np.ndarray, init_latents: np.ndarray | None = None) -> np.ndarray:
        """Where sampling starts, in the sampler's space (VP for ddpm, sigma space otherwise).

        Args:
            noise: (B, C, H, W) float32 N(0, I).
            init_latents: img2img: (B, C, H, W) float32 clean latents (already times the VAE's
                ``scaling_factor``), noised to the plan's first level as diffusers'
                ``scheduler.add_noise``: ``sqrt(abar) x0 + sqrt(1 - abar) noise`` (DDPM / DDIM /
                LCM, VP), ``alpha_t x0 + sigma_t noise`` with ``alpha_t = 1 / sqrt(1 + sigma^2)`` (DPM++),
                ``x0 + sigma noise`` (Euler, sigma space). None: ``noise`` times ``init_noise_sigma``.
        Returns:
            (B, C, H, W) float32, a new array: VP ``x_t`` for ddpm, sigma space otherwise.
        """
        s = np.float32(self.sigmas[0])
        if init_latents is None:
            x = noise.astype(np.float32, copy=True)
            if self.init_noise_sigma != 1.0:
                x *= np.float32(self.init_noise_sigma)
        elif not self.vp:
            return (init_latents + noise * s).astype(np.float32)
        elif self.alphas_cumprod is not None:
            a = np.float32(self.alphas_cumprod[0])
            x = a**0.5 * init_latents + (np.float32(1) - a) ** 0.5 * noise
        else:
            alpha = np.float32(1) / (s * s + np.float32(1)) ** np.float32(0.5)
            x = alpha * init_latents + (s * alpha) * noise
        x = x.astype(np.float32, copy=False)
        if self.sampler == Sampler.ddpm or not self.vp:
            return x
        return x * (1 + s * s) ** np.float32(0.5)

    def denoiser(self, network, schedule: NoiseSchedule, timestep_dtype=np.int64):
        """A :class:`edgegen.denoiser.Denoiser` over ``network`` with this plan's timestep table and clipping."""
        from .denoiser import Denoiser

        return Denoiser(network, schedule, sigmas=self.sigmas[:-1], timesteps=self.timesteps,
                        timestep_dtype=timestep_dtype, clip_sample_range=schedule.clip_sample_range if self.clip else None)

    def default_eta(self) -> float:
        """Eta when none is given: 1 for ddpm / euler-a / lcm (fresh noise every step), else 0."""
        return 1.0 if self.sampler in (Sampler.ddpm, Sampler.euler_a, Sampler.lcm) else 0.0

    def run(self, denoise: Denoise, latents: np.ndarray, *, eta: float | None = None, noise: Noise | None = None,
            callback: Callback | None = None, init_latents: np.ndarray | None = None) -> np.ndarray:
        """Sample from N(0, I) ``latents`` (B, C, H, W) float32; returns (B, C, H, W) float32 VP samples.

        With ``init_latents`` (img2img, on a :meth:`truncated` plan) ``latents`` is the noise mixed
        into those clean latents at the plan's first level (:meth:`start`).

        ``eta`` applies to ddim (default 0) and euler-a (default 1); an explicit 0 is honoured.
        When ``callback`` stops the run, the result is the sample where it stopped (still noisy);
        the clean estimate is the ``x0`` the callback last saw (what the pipeline decodes).
        Raises ValueError for an eta other than the fixed one of ddpm / lcm (1), euler and dpmpp-2m (0).
        """
        eta = self.default_eta() if eta is None else float(eta)
        if self.sampler not in (Sampler.ddim, Sampler.euler_a) and eta != self.default_eta():
            raise ValueError(f"eta: {self.sampler.value} has a fixed eta {self.default_eta():g} "
                             f"(eta applies to ddim and euler-a), got {eta:g}")
        x = self.start(latents, init_latents)
        if self.sampler == Sampler.ddpm:
            return sample_ddpm(denoise, x, self.alphas_cumprod, self.alphas_cumprod_prev, noise=noise,
                               variance_type=self.variance_type, final_noise=self.final_noise, callback=callback)
        if self.sampler == Sampler.dpmpp_2m:
            x = sample_dpmpp_2m(denoise, x, self.sigmas, first_order_final=self.first_order_final, callback=callback)
        elif self.sampler == Sampler.lcm:
            c_skip, c_out = lcm_boundary_scalings(self.timesteps, self.timestep_scaling)
            x = sample_lcm(denoise, x, self.sigmas, c_skip, c_out, noise=noise, callback=callback)
        else:
            x = sample_euler_ancestral(denoise, x, self.sigmas, eta=eta, noise=noise, callback=callback,
                                       sigmas_to=self.sigmas_to)
        return x / (1 + self.sigmas[-1] ** 2) ** np.float32(0.5) if self.vp else x
