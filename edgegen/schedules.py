"""Noise schedules in numpy, read from a diffusers ``scheduler_config.json``.

A :class:`NoiseSchedule` holds the training schedule (``betas`` -> ``alphas_cumprod``) and the
options that change sampling (``prediction_type``, ``clip_sample``, ``timestep_spacing``, ...).
Its methods give the explicit arrays the samplers in :mod:`edgegen.samplers` run over:
timesteps for the network, ``alphas_cumprod`` pairs for DDPM / DDIM, ``sigmas`` for Euler.

The arithmetic follows diffusers' ``DDPMScheduler``, ``DDIMScheduler``,
``EulerDiscreteScheduler`` and ``EulerAncestralDiscreteScheduler`` (v0.2x-0.4x) so that the
same config gives the same timesteps and coefficients; tests check it against diffusers.
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

# Config keys that change the maths but that edgegen does not implement: refusing them is
# better than sampling with a silently different schedule.
_UNSUPPORTED_TRUE = ("thresholding", "rescale_betas_zero_snr", "use_karras_sigmas",
                     "use_exponential_sigmas", "use_beta_sigmas")


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
        config: the diffusers config this was read from, as given.
    """

    alphas_cumprod: np.ndarray
    prediction_type: str = "epsilon"
    clip_sample_range: float | None = None
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    variance_type: str = "fixed_small"
    config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | Path) -> "NoiseSchedule":
        """Build a schedule from a diffusers scheduler config (a dict or a JSON file path).

        Raises:
            ScheduleError: an unknown ``beta_schedule`` / ``timestep_spacing`` /
                ``prediction_type`` / ``variance_type``, or an option edgegen does not
                implement (``thresholding``, ``rescale_betas_zero_snr``, Karras sigmas, ...).
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
        betas = _betas(config)
        # torch's float32 cumprod accumulates in double; so does this, to match diffusers.
        alphas_cumprod = np.cumprod((np.float32(1.0) - betas).astype(np.float64)).astype(np.float32)
        # diffusers' DDPM and DDIM schedulers clip by default; saved configs usually say so.
        clip_default = config.get("_class_name") in ("DDPMScheduler", "DDIMScheduler")
        clip = bool(config.get("clip_sample", clip_default))
        return cls(
            alphas_cumprod=alphas_cumprod,
            prediction_type=_choice(config, "prediction_type", "epsilon", PREDICTION_TYPES),
            clip_sample_range=float(config.get("clip_sample_range", 1.0)) if clip else None,
            timestep_spacing=_choice(config, "timestep_spacing", "leading", TIMESTEP_SPACINGS),
            steps_offset=int(config.get("steps_offset", 0)),
            set_alpha_to_one=bool(config.get("set_alpha_to_one", True)),
            variance_type=_choice(config, "variance_type", "fixed_small", VARIANCE_TYPES),
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

    def init_noise_sigma(self, sigmas: np.ndarray) -> float:
        """Scale of the initial Gaussian latents for Euler samplers (diffusers' rule)."""
        top = float(sigmas.max())
        return top if self.timestep_spacing in ("linspace", "trailing") else (top**2 + 1) ** 0.5
