"""Noise schedules in numpy, read from a diffusers ``scheduler_config.json``.

A :class:`NoiseSchedule` holds the training schedule (``betas`` -> ``alphas_cumprod``) and the
options that change sampling (``prediction_type``, ``clip_sample``, ``timestep_spacing``, ...).
Its methods give the explicit arrays the samplers in :mod:`edgegen.samplers` run over:
timesteps for the network, ``alphas_cumprod`` pairs for DDPM / DDIM, ``sigmas`` for Euler.

The arithmetic follows diffusers' ``DDPMScheduler``, ``DDIMScheduler``,
``EulerDiscreteScheduler``, ``EulerAncestralDiscreteScheduler``,
``DPMSolverMultistepScheduler`` and ``LCMScheduler`` (v0.2x-0.4x) so that the same config gives the same timesteps,
sigmas and coefficients; tests check it against diffusers. Sigma schedules other than the
training one: Karras et al. 2022 (eq. 5, rho 7) and exponential (uniform in log sigma).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import ScheduleError

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log")
SIGMA_SCHEDULES = ("discrete", "karras", "exponential")
FINAL_SIGMAS_TYPES = ("zero", "sigma_min")

# Config keys that change the maths but that edgegen does not implement: refusing them is
# better than sampling with a silently different schedule.
_UNSUPPORTED_TRUE = ("thresholding", "rescale_betas_zero_snr", "use_beta_sigmas", "use_lu_lambdas",
                     "use_flow_sigmas")
# DPMSolverMultistepScheduler options edgegen implements only at these values (DPM-Solver++ 2M).
_DPM_FIXED = {"algorithm_type": "dpmsolver++", "solver_order": 2, "solver_type": "midpoint"}
# LCMScheduler's own defaults differ from the other schedulers' (SD's betas); a config that omits
# them means these.
_LCM_DEFAULTS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}


def _betas(config: Mapping[str, Any]) -> np.ndarray:
    n = int(config.get("num_train_timesteps", 1000))
    if config.get("trained_betas") is not None:
        return np.asarray(config["trained_betas"], dtype=np.float32)
    kind = config.get("beta_schedule", "linear")
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if kind == "linear":
        return np.linspace(start, end, n, dtype=np.float64).astype(np.float32)
    if kind == "scaled_linear":
        # Latent diffusion's schedule: linear in sqrt(beta).
        root = np.linspace(start**0.5, end**0.5, n, dtype=np.float64).astype(np.float32)
        return root * root
    if kind == "squaredcos_cap_v2":
        # Nichol & Dhariwal 2021, "Improved DDPM", eq. 17, betas capped at 0.999.
        def alpha_bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), 0.999) for i in range(n)]
        return np.asarray(betas, dtype=np.float32)
    raise ScheduleError(
        f"beta_schedule: expected one of {', '.join(BETA_SCHEDULES)}, got '{kind}'")


def _checked_betas(config: Mapping[str, Any]) -> np.ndarray:
    """The betas, or ScheduleError unless every one is finite and in (0, 1)."""
    try:
        n = int(config.get("num_train_timesteps", 1000))
        betas = _betas(config)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ScheduleError):
            raise
        raise ScheduleError(f"scheduler config: expected numeric beta_start / beta_end / num_train_timesteps / "
                            f"trained_betas, got {exc}") from None
    if n < 2 or betas.ndim != 1 or betas.shape[0] < 2:
        raise ScheduleError(f"num_train_timesteps: expected >= 2 training steps, got {betas.shape}")
    bad = ~np.isfinite(betas) | (betas <= 0) | (betas >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        given = {k: config.get(k) for k in ("beta_schedule", "beta_start", "beta_end") if k in config}
        raise ScheduleError(f"betas: expected finite values in (0, 1), got {float(betas[i])!r} at step {i} "
                            f"(from {given or 'trained_betas'})")
    return betas


def _choice(config: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = config.get(key, default)
    if value not in allowed:
        raise ScheduleError(f"{key}: expected one of {', '.join(allowed)}, got '{value}'")
    return value


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete-time variance-preserving diffusion schedule and its sampling options.

    Attributes:
        alphas_cumprod: (T,) float32, the products of ``1 - beta`` for training steps 0..T-1,
            decreasing in (0, 1).
        prediction_type: what the network predicts: ``epsilon`` (noise), ``v_prediction``
            (Salimans & Ho 2022) or ``sample`` (x0).
        clip_sample_range: if not None, DDPM / DDIM clip the x0 estimate to
            [-range, range] (diffusers ``clip_sample``); Euler samplers never clip, as in diffusers.
        timestep_spacing: ``leading``, ``trailing`` or ``linspace`` (Lin et al. 2023, table 2).
        steps_offset: added to ``leading`` timesteps (Stable Diffusion uses 1).
        set_alpha_to_one: DDIM's final ``alphas_cumprod`` is 1.0 if true, else ``alphas_cumprod[0]``.
        variance_type: DDPM's posterior variance choice.
        sigma_schedule: the config's sigma spacing for Euler / DPM++ (``use_karras_sigmas``,
            ``use_exponential_sigmas``, else ``discrete``); a run may override it.
        final_sigmas_type: ``zero`` or ``sigma_min`` (the last noise level of Euler / DPM++).
        lower_order_final, euler_at_final, lambda_min_clipped: DPMSolverMultistepScheduler's options.
        original_inference_steps: LCMScheduler's distillation grid size (50: timesteps k-1, 2k-1, ...,
            T-1 with k = T // 50).
        timestep_scaling: LCMScheduler's factor on the timestep in the boundary scalings (10).
        config: the diffusers config this was read from, as given.
    """

    alphas_cumprod: np.ndarray
    prediction_type: str = "epsilon"
    clip_sample_range: float | None = None
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    variance_type: str = "fixed_small"
    sigma_schedule: str = "discrete"
    final_sigmas_type: str = "zero"
    lower_order_final: bool = True
    euler_at_final: bool = False
    lambda_min_clipped: float = -math.inf
    original_inference_steps: int = 50
    timestep_scaling: float = 10.0
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | Path) -> "NoiseSchedule":
        """Build a schedule from a diffusers scheduler config (a dict or a JSON file path).

        Raises:
            ScheduleError: an unknown ``beta_schedule`` / ``timestep_spacing`` /
                ``prediction_type`` / ``variance_type``, betas that are not finite and in (0, 1)
                (e.g. ``beta_end`` 2.0), or an option edgegen does not implement
                (``thresholding``, ``rescale_betas_zero_snr``, beta sigmas, DPM-Solver variants
                other than ++ 2M, ...).
        """
        if isinstance(config, (str, Path)):
            try:
                config = json.loads(Path(config).read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ScheduleError(f"scheduler config '{config}': expected a readable JSON file, got {exc}") from exc
        if not isinstance(config, Mapping):
            raise ScheduleError(f"scheduler config: expected a JSON object, got {type(config).__name__}")
        for key in _UNSUPPORTED_TRUE:
            if config.get(key):
                raise ScheduleError(f"{key}=true is not supported by edgegen's samplers; expected false or absent")
        for key, value in _DPM_FIXED.items():
            if config.get("_class_name") == "DPMSolverMultistepScheduler" and config.get(key, value) != value:
                raise ScheduleError(f"{key}: edgegen implements DPM-Solver++ 2M only; expected {value!r}, "
                                    f"got {config[key]!r}")
        if config.get("_class_name") == "LCMScheduler":
            config = {**_LCM_DEFAULTS, **config}
        if config.get("use_karras_sigmas") and config.get("use_exponential_sigmas"):
            raise ScheduleError("use_karras_sigmas / use_exponential_sigmas: expected at most one true, got both")
        betas = _checked_betas(config)
        # torch's float32 cumprod accumulates in double; so does this, to match diffusers.
        alphas_cumprod = np.cumprod((np.float32(1.0) - betas).astype(np.float64)).astype(np.float32)
        # diffusers' DDPM and DDIM schedulers clip by default; saved configs usually say so.
        clip_default = config.get("_class_name") in ("DDPMScheduler", "DDIMScheduler")
        clip = bool(config.get("clip_sample", clip_default))
        clip_range = float(config.get("clip_sample_range", 1.0))
        if clip and not (math.isfinite(clip_range) and clip_range > 0):
            raise ScheduleError(f"clip_sample_range: expected a finite value > 0, got {clip_range!r}")
        return cls(
            alphas_cumprod=alphas_cumprod,
            prediction_type=_choice(config, "prediction_type", "epsilon", PREDICTION_TYPES),
            clip_sample_range=clip_range if clip else None,
            timestep_spacing=_choice(config, "timestep_spacing", "leading", TIMESTEP_SPACINGS),
            steps_offset=int(config.get("steps_offset", 0)),
            set_alpha_to_one=bool(config.get("set_alpha_to_one", True)),
            variance_type=_choice(config, "variance_type", "fixed_small", VARIANCE_TYPES),
            sigma_schedule=("karras" if config.get("use_karras_sigmas") else
                            "exponential" if config.get("use_exponential_sigmas") else "discrete"),
            final_sigmas_type=_choice(config, "final_sigmas_type", "zero", FINAL_SIGMAS_TYPES),
            lower_order_final=bool(config.get("lower_order_final", True)),
            euler_at_final=bool(config.get("euler_at_final", False)),
            lambda_min_clipped=float(config.get("lambda_min_clipped", -math.inf)),
            **_lcm_options(config, int(betas.shape[0])),
            config=dict(config),
        )

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def _spaced(self, num_inference_steps: int) -> np.ndarray:
        """Descending float64 timesteps in [0, T-1] for the configured spacing."""
        n, total = int(num_inference_steps), self.num_train_timesteps
        if not 1 <= n <= total:
            raise ScheduleError(f"num_inference_steps: expected 1..{total}, got {num_inference_steps}")
        if self.timestep_spacing == "linspace":
            return np.linspace(0, total - 1, n)[::-1].copy()
        if self.timestep_spacing == "leading":
            return (np.arange(0, n) * (total // n)).round()[::-1] + self.steps_offset
        return np.round(np.arange(total, 0, -total / n)) - 1  # trailing

    def timesteps(self, num_inference_steps: int) -> np.ndarray:
        """(N,) int64 descending training timesteps, as diffusers' DDPM / DDIM ``set_timesteps``."""
        return self._spaced(num_inference_steps).round().astype(np.int64)

    def ddpm_alphas(self, timesteps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``alphas_cumprod`` at each timestep and at the next one in the list (1.0 after the last).

        Returns:
            (alpha_t, alpha_prev): two (N,) float32 arrays; DDPMScheduler's ``previous_timestep``.
        """
        alpha_t = self.alphas_cumprod[timesteps]
        alpha_prev = np.append(self.alphas_cumprod[timesteps[1:]], np.float32(1.0))
        return alpha_t, alpha_prev.astype(np.float32)

    def ddim_alphas(self, timesteps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``alphas_cumprod`` at each timestep and at ``t - T // N`` (DDIMScheduler's prev step).

        Below timestep 0 the target is 1.0 if ``set_alpha_to_one`` else ``alphas_cumprod[0]``.
        Returns (alpha_t, alpha_prev), two (N,) float32 arrays.
        """
        prev = timesteps - self.num_train_timesteps // len(timesteps)
        final = np.float32(1.0) if self.set_alpha_to_one else self.alphas_cumprod[0]
        alpha_prev = np.where(prev >= 0, self.alphas_cumprod[np.maximum(prev, 0)], final)
        return self.alphas_cumprod[timesteps], alpha_prev.astype(np.float32)

    def euler_timesteps(self, num_inference_steps: int) -> np.ndarray:
        """(N,) float32 descending timesteps for Euler samplers (fractional for ``linspace``)."""
        spaced = self._spaced(num_inference_steps)
        if self.timestep_spacing != "linspace":
            spaced = spaced.round()
        return spaced.astype(np.float32)

    def sigmas(self, timesteps: np.ndarray) -> np.ndarray:
        """(N+1,) float32 noise levels sqrt((1 - a) / a) interpolated at ``timesteps``, then 0.

        Matches EulerDiscreteScheduler (``interpolation_type="linear"``, ``final_sigmas_type="zero"``).
        """
        train = ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5
        at = np.interp(timesteps, np.arange(0, len(train)), train)
        return np.concatenate([at, [0.0]]).astype(np.float32)

    @property
    def train_sigmas(self) -> np.ndarray:
        """(T,) float32 sigma = sqrt((1 - a) / a) of every training timestep, increasing."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod) ** 0.5

    def sigma_to_t(self, sigmas: np.ndarray) -> np.ndarray:
        """Fractional training timesteps of noise levels, linear in log sigma between the training
        sigmas (diffusers' ``_sigma_to_t``, k-diffusion's ``sigma_to_t``); clamped to [0, T-1]."""
        log_sigmas = np.log(self.train_sigmas)
        sigma = np.asarray(sigmas, dtype=np.float64)
        log_sigma = np.log(np.maximum(sigma, 1e-10))
        dists = log_sigma - log_sigmas[:, np.newaxis]
        low = np.cumsum(dists >= 0, axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
        w = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), 0, 1)
        return ((1 - w) * low + w * (low + 1)).reshape(sigma.shape)

    def _final_sigma(self) -> float:
        return float(self.train_sigmas[0]) if self.final_sigmas_type == "sigma_min" else 0.0

    def euler_sigmas(self, num_inference_steps: int, kind: str = "discrete") -> tuple[np.ndarray, np.ndarray]:
        """Timesteps and sigmas of EulerDiscreteScheduler for a sigma schedule ``kind``.

        Karras / exponential sigmas span the spaced discrete ones (their first and last), and
        the network sees their fractional timesteps (``sigma_to_t``, not rounded), as diffusers.
        Returns:
            (timesteps (N,) float32, sigmas (N+1,) float32 decreasing, last 0 or sigma_min).
        """
        timesteps = self.euler_timesteps(num_inference_steps)
        spaced = np.interp(timesteps, np.arange(self.num_train_timesteps), self.train_sigmas)
        sigmas = _respace(spaced[-1], spaced[0], num_inference_steps, kind, spaced)
        if kind != "discrete":
            timesteps = self.sigma_to_t(sigmas).astype(np.float32)
        return timesteps, np.append(sigmas, self._final_sigma()).astype(np.float32)

    def dpm_sigmas(self, num_inference_steps: int, kind: str = "discrete") -> tuple[np.ndarray, np.ndarray]:
        """Timesteps and sigmas of DPMSolverMultistepScheduler for a sigma schedule ``kind``.

        Its own spacing (N+1 points, the last dropped), over timesteps whose lambda is above
        ``lambda_min_clipped``. Karras / exponential sigmas span all training sigmas; their
        timesteps are ``sigma_to_t`` rounded (Karras, except for squaredcos_cap_v2) or truncated
        to int64 (exponential), exactly as diffusers feeds the U-Net.
        Returns:
            (timesteps (N,) int64, sigmas (N+1,) float32 decreasing, last 0 or sigma_min).
        """
        n = int(num_inference_steps)
        if not 1 <= n <= self.num_train_timesteps:
            raise ScheduleError(f"num_inference_steps: expected 1..{self.num_train_timesteps}, got {num_inference_steps}")
        lambdas = np.log(self.alphas_cumprod**0.5) - np.log((1 - self.alphas_cumprod) ** 0.5)
        last = self.num_train_timesteps - int(np.searchsorted(lambdas[::-1], self.lambda_min_clipped))
        if self.timestep_spacing == "linspace":
            timesteps = np.linspace(0, last - 1, n + 1).round()[::-1][:-1].astype(np.int64)
        elif self.timestep_spacing == "leading":
            timesteps = (np.arange(0, n + 1) * (last // (n + 1))).round()[::-1][:-1].astype(np.int64)
            timesteps += self.steps_offset
        else:
            timesteps = np.arange(last, 0, -self.num_train_timesteps / n).round().astype(np.int64) - 1
        train = self.train_sigmas
        if kind == "discrete":
            sigmas = np.interp(timesteps, np.arange(len(train)), train)
        else:
            sigmas = _respace(float(train[0]), float(train[-1]), n, kind, None)
            t = self.sigma_to_t(sigmas)
            if kind == "karras" and self.config.get("beta_schedule") != "squaredcos_cap_v2":
                t = t.round()
            timesteps = t.astype(np.int64)
        return timesteps, np.append(sigmas, self._final_sigma()).astype(np.float32)

    def lcm_timesteps(self, num_inference_steps: int, strength: float = 1.0) -> np.ndarray:
        """(N,) int64 descending timesteps of LCMScheduler's ``set_timesteps`` (Luo et al. 2023, sec. 4.3).

        The distillation grid is ``k-1, 2k-1, ..., m k - 1`` with ``k = T // original_inference_steps``
        and ``m = int(original_inference_steps * strength)``; the run takes N points of it, evenly
        spaced in index from the top (``floor(linspace(0, m, N, endpoint=False))``). The config's
        ``timestep_spacing`` plays no part, as in diffusers.
        Raises:
            ScheduleError: N outside 1..m (at most ``original_inference_steps``), strength not in (0, 1].
        """
        n = int(num_inference_steps)
        if not 0 < strength <= 1:
            raise ScheduleError(f"strength: expected a number in (0, 1], got {strength!r}")
        grid = (np.arange(1, int(self.original_inference_steps * strength) + 1) * self._lcm_k - 1)[::-1]
        if not 1 <= n <= len(grid):
            raise ScheduleError(f"num_inference_steps: LCM takes 1..{len(grid)} steps (points of its "
                                f"{self.original_inference_steps}-step distillation grid), got {num_inference_steps}")
        return grid[np.floor(np.linspace(0, len(grid), num=n, endpoint=False)).astype(np.int64)].astype(np.int64)

    @property
    def _lcm_k(self) -> int:
        return self.num_train_timesteps // self.original_inference_steps

    def init_noise_sigma(self, sigmas: np.ndarray) -> float:
        """Scale of the initial Gaussian latents for Euler samplers (diffusers' rule)."""
        top = float(sigmas.max())
        return top if self.timestep_spacing in ("linspace", "trailing") else (top**2 + 1) ** 0.5


def _lcm_options(config: Mapping[str, Any], total: int) -> dict:
    """LCMScheduler's ``original_inference_steps`` (1..T) and ``timestep_scaling`` (finite, > 0), checked."""
    steps, scaling = config.get("original_inference_steps", 50), config.get("timestep_scaling", 10.0)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= total:
        raise ScheduleError(f"original_inference_steps: expected an integer in 1..{total} (the training "
                            f"timesteps), got {steps!r}")
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not (math.isfinite(scaling) and scaling > 0):
        raise ScheduleError(f"timestep_scaling: expected a finite number > 0, got {scaling!r}")
    return {"original_inference_steps": steps, "timestep_scaling": float(scaling)}


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> np.ndarray:
    """(n,) float64 noise levels from ``sigma_max`` down to ``sigma_min``, evenly spaced in
    ``sigma ** (1 / rho)`` (Karras et al. 2022, eq. 5)."""
    ramp = np.linspace(0, 1, n)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def exponential_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """(n,) float64 noise levels from ``sigma_max`` down to ``sigma_min``, evenly spaced in log sigma."""
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), n))


def _respace(sigma_min: float, sigma_max: float, n: int, kind: str, discrete: np.ndarray | None) -> np.ndarray:
    if kind == "karras":
        return karras_sigmas(float(sigma_min), float(sigma_max), n)
    if kind == "exponential":
        return exponential_sigmas(float(sigma_min), float(sigma_max), n)
    if kind == "discrete" and discrete is not None:
        return discrete
    raise ScheduleError(f"sigmas: expected one of {', '.join(SIGMA_SCHEDULES)}, got '{kind}'")
