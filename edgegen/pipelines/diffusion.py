"""Diffusion pipelines: text-to-image Stable Diffusion and unconditional U-Nets.

The loop is :class:`edgegen.samplers.SamplingPlan` over the U-Net engine, with
classifier-free guidance for SD; numerically the same as diffusers' StableDiffusionPipeline
/ DDPMPipeline given the same initial noise (tests check images to 2e-3).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import EngineInputError
from ..guidance import classifier_free_guidance, guidance_steps, needs_unconditional
from ..images import to_unit_range
from ..samplers import SamplingPlan, gaussian_noise
from ..schedules import NoiseSchedule
from ..tokenizer import ClipTokenizer
from .base import EngineHook, Generation, load_components, reset, timings

# The sampler a scheduler config's own class corresponds to, when none is asked for.
_DEFAULT_SAMPLER = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "EulerDiscreteScheduler": "euler",
                    "EulerAncestralDiscreteScheduler": "euler-a"}


class DiffusionPipeline:
    """Run a ``stable-diffusion`` or ``unet`` artifact.

    Randomness: ``numpy.random.default_rng(seed)`` draws the initial latents (unless
    ``init_noise`` is given) and then every ancestral-sampler noise, in that order.
    """

    def __init__(self, artifact: Artifact, *, backend: str | None = None, precision: str | None = None,
                 device: str | None = None, engine_hook: EngineHook | None = None):
        m = artifact.manifest
        self.artifact = artifact
        self.text_to_image = artifact.family == "stable-diffusion"
        names = ["text_encoder", "unet", "vae_decoder"] if self.text_to_image else ["unet"]
        self.engines = load_components(artifact, names, backend=backend, precision=precision, device=device,
                                       engine_hook=engine_hook)
        self.unet = self.engines["unet"]
        self.backend = self.unet.engine.backend
        self.precision = self.unet.engine.precision
        self.schedule = NoiseSchedule.from_config(m["scheduler"])
        self.default_sampler = _DEFAULT_SAMPLER.get(m["scheduler"].get("_class_name"), "ddim")
        self.image = m["image"]
        self.latent = m["latent"]
        self._timestep = self.unet.input("timestep")
        self.conditioning = m.get("conditioning")
        if self.text_to_image:
            tok = m["tokenizer"]
            self.tokenizer = ClipTokenizer(artifact.path / tok["file"], max_length=tok["max_length"], pad_id=tok["pad_id"])

    def _latent_shape(self, batch: int, height: int | None, width: int | None) -> tuple[int, ...]:
        if not self.text_to_image:
            return (batch, *self.latent["shape"])
        h, w, f = height or self.image["height"], width or self.image["width"], self.latent["scale_factor"]
        if h % f or w % f:
            raise EngineInputError(f"height/width: expected multiples of {f}, got {h}x{w}")
        return (batch, self.latent["channels"], h // f, w // f)

    def _encode(self, prompts: Sequence[str]) -> np.ndarray:
        ids = self.tokenizer(prompts)
        return self.engines["text_encoder"]({"input_ids": ids})["last_hidden_state"]

    def _batch_mode(self, batch: int) -> str:
        """'joint' runs both CFG branches in one call of 2B, 'split' in two calls of B."""
        dim = self.unet.input("sample").shape[0]
        if not isinstance(dim, int) or dim == 2 * batch:
            return "joint"
        if dim == batch:
            return "split"
        raise EngineInputError(f"unet engine: batch is fixed at {dim}; expected {batch} or {2 * batch} "
                               f"for {batch} image(s)")

    def __call__(self, prompt: str | Sequence[str] | None = None, *, negative_prompt: str | Sequence[str] | None = None,
                 num_inference_steps: int = 50, sampler: str | None = None, eta: float = 0.0,
                 guidance_scale: float = 7.5, seed: int = 0, num_images: int = 1, height: int | None = None,
                 width: int | None = None, init_noise: np.ndarray | None = None, class_label: int | Sequence[int] | None = None,
                 guidance_interval: tuple[float, float] | None | str = "default", callback=None) -> Generation:
        """Generate images.

        Args:
            prompt: SD only; one prompt for all ``num_images``, or one per image.
            negative_prompt: SD only; replaces the empty unconditional prompt.
            sampler: ddpm, ddim, euler or euler-a; default from the scheduler config's class.
            eta: DDIM's eta (0 deterministic); euler-a uses 1 unless given.
            guidance_scale: CFG scale w; 1 skips the unconditional pass (SD only).
            init_noise: (B, C, h, w) float32 N(0, I) initial latents, replacing the seeded draw
                (scaled by the sampler's init sigma as diffusers does).
            class_label: class-conditional U-Nets: one label for all images or one per image
                (a prompt that names a class, e.g. "7", works too); default: cycle through the classes.
            guidance_interval: class-conditional U-Nets: (sigma_lo, sigma_hi], the noise levels where
                CFG applies (:mod:`edgegen.guidance`); None for every step; default the artifact's
                recommended interval (``conditioning.guidance_interval``), else every step.
            callback: ``callback(step, x)`` after each step.
        Returns:
            a :class:`Generation` with (B, H, W, C) float32 images in [0, 1].
        """
        start = time.perf_counter()
        reset(self.engines)
        sampler = sampler or self.default_sampler
        rng = np.random.default_rng(seed)
        if init_noise is not None:
            latents = np.ascontiguousarray(init_noise, dtype=np.float32)
            expected = self._latent_shape(latents.shape[0], height, width)
            if latents.shape != expected:
                raise EngineInputError(f"init_noise: expected float32 {expected}, got {latents.shape}")
        else:
            latents = rng.standard_normal(self._latent_shape(num_images, height, width), dtype=np.float32)
        batch = latents.shape[0]
        plan = SamplingPlan.build(self.schedule, sampler, num_inference_steps)
        tdtype = np.dtype(self._timestep.dtype)
        timesteps = plan.timesteps.round() if tdtype.kind == "i" else plan.timesteps

        info = {"model": self.artifact.family, "seed": seed, "sampler": sampler, "steps": num_inference_steps,
                "eta": eta, "backend": self.backend, "precision": self.precision}
        if self.text_to_image:
            prompts = self._as_list(prompt or "", batch, "prompt")
            cfg = needs_unconditional(guidance_scale)
            cond = self._encode(prompts)
            uncond = self._encode(self._as_list(negative_prompt or "", batch, "negative_prompt")) if cfg else None
            mode = self._batch_mode(batch) if cfg else "single"
            hidden = np.concatenate([uncond, cond]) if mode == "joint" else cond
            width_t = 2 * batch if mode == "joint" else batch
            t_feeds = [np.full((width_t,), t, dtype=tdtype) for t in timesteps]
            t_single = [np.full((batch,), t, dtype=tdtype) for t in timesteps] if mode == "split" else t_feeds

            def model(x, i):
                if mode == "joint":
                    out = self.unet({"sample": np.concatenate([x, x]), "timestep": t_feeds[i],
                                     "encoder_hidden_states": hidden})["noise_pred"]
                    return classifier_free_guidance(out[:batch], out[batch:], guidance_scale)
                eps_c = self.unet({"sample": x, "timestep": t_single[i], "encoder_hidden_states": cond})["noise_pred"]
                if mode == "single":
                    return eps_c
                eps_u = self.unet({"sample": x, "timestep": t_single[i], "encoder_hidden_states": uncond})["noise_pred"]
                return classifier_free_guidance(eps_u, eps_c, guidance_scale)

            info.update(prompt=prompts[0], negative_prompt=negative_prompt, guidance_scale=guidance_scale)
        elif self.conditioning:
            labels = self._class_labels(prompt, class_label, batch)
            null = self.conditioning.get("null_class")
            cfg = null is not None and needs_unconditional(guidance_scale)
            both = np.concatenate([np.full(batch, null, np.int64), labels]) if cfg else labels
            if guidance_interval == "default":
                guidance_interval = self.conditioning.get("guidance_interval")
            try:
                active = guidance_steps(self.schedule.sigmas(plan.timesteps)[:-1], guidance_scale if cfg else 1.0,
                                        guidance_interval)
            except ValueError as exc:
                raise EngineInputError(str(exc)) from None
            t_both = [np.full((len(both),), t, dtype=tdtype) for t in timesteps]
            t_cond = [np.full((batch,), t, dtype=tdtype) for t in timesteps]

            def model(x, i):
                if not active[i]:
                    return self.unet({"sample": x, "timestep": t_cond[i], "class_labels": labels})["noise_pred"]
                out = self.unet({"sample": np.concatenate([x, x]), "timestep": t_both[i],
                                 "class_labels": both})["noise_pred"]
                return classifier_free_guidance(out[:batch], out[batch:], guidance_scale)

            names = self.conditioning.get("class_names") or []
            info.update(class_labels=",".join(str(int(v)) for v in labels), guidance_scale=guidance_scale if cfg else 1.0,
                        guidance_interval=list(guidance_interval) if cfg and guidance_interval else None,
                        prompt=",".join(names[int(v)] if int(v) < len(names) else str(int(v)) for v in labels))
        else:
            if prompt is not None or class_label is not None:
                raise EngineInputError("prompt / class_label: this unconditional U-Net takes no condition, got one")
            t_feeds = [np.full((batch,), t, dtype=tdtype) for t in timesteps]

            def model(x, i):
                return self.unet({"sample": x, "timestep": t_feeds[i]})["noise_pred"]

        x0 = plan.run(model, latents, self.schedule, eta=eta, noise=gaussian_noise(rng), callback=callback)
        if self.text_to_image:
            scaled = x0 / np.float32(self.latent.get("scaling_factor", 1.0))
            x0 = self.engines["vae_decoder"]({"latents": scaled})["image"]
        images = to_unit_range(x0, self.image["output_range"])
        return Generation(images, info, timings(self.engines, start))

    def _class_labels(self, prompt, class_label, batch: int) -> np.ndarray:
        """(batch,) int64 labels from ``class_label``, a prompt naming a class, or a cycle through the classes."""
        n = int(self.conditioning["num_classes"])
        names = list(self.conditioning.get("class_names") or [str(i) for i in range(n)])
        if class_label is None and prompt is not None:
            text = prompt if isinstance(prompt, str) else None
            if text is None or text.strip() not in names:
                raise EngineInputError(f"prompt: this U-Net is conditioned on classes {names}; expected one of them, "
                                       f"got {prompt!r}")
            class_label = names.index(text.strip())
        if class_label is None:
            labels = np.arange(batch) % n
        else:
            labels = np.broadcast_to(np.asarray(class_label, dtype=np.int64), (batch,)).copy()
        if labels.min() < 0 or labels.max() >= n:
            raise EngineInputError(f"class_label: expected values in 0..{n - 1}, got {labels.tolist()}")
        return labels.astype(np.int64)

    @staticmethod
    def _as_list(value: str | Sequence[str], batch: int, what: str) -> list[str]:
        if isinstance(value, str):
            return [value] * batch
        value = list(value)
        if len(value) != batch:
            raise EngineInputError(f"{what}: expected one string or {batch} strings, got {len(value)}")
        return value
