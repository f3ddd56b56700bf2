"""Diffusion pipelines: text-to-image Stable Diffusion, class-conditional and unconditional U-Nets.

A call is condition -> denoiser -> sampler -> decode: the U-Net engine becomes a
:class:`edgegen.denoiser.Denoiser`, wrapped in a :class:`edgegen.guidance.CFGDenoiser` for
conditioned models, and a :class:`edgegen.samplers.SamplingPlan` runs a sampler over it;
numerically the same as diffusers' StableDiffusionPipeline / DDPMPipeline given the same
initial noise (tests check images to 2e-3).
"""

from __future__ import annotations

import math
import numbers
import time
from types import SimpleNamespace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import ArtifactError, EngineInputError
from ..guidance import CFGDenoiser, batch_mode, check_interval, guidance_scale_embedding, needs_unconditional
from ..images import read_image, to_unit_range
from ..preview import fit_projection, project
from ..runtimes.base import check_finite
from ..samplers import Noise, SamplingPlan, gaussian_noise
from ..tiling import check_tile_size, decode_tiled
from ..tokenizer import ClipTokenizer
from ..types import Decoder, MemoryMode, parse_enum
from .base import EngineHook, Generation, load_components, memory_mode, reset, timings
from .budget import auto_tile, decode_budget

TINY_DECODER = "vae_decoder_tiny"  # the component `edgegen export --tiny-vae` adds

# The sampler a scheduler config's own class corresponds to, when none is asked for.
_DEFAULT_SAMPLER = {"DDPMScheduler": "ddpm", "DDIMScheduler": "ddim", "EulerDiscreteScheduler": "euler",
                    "EulerAncestralDiscreteScheduler": "euler-a", "DPMSolverMultistepScheduler": "dpmpp-2m",
                    "LCMScheduler": "lcm"}


def default_sampler(scheduler_class: str | None) -> str:
    """The sampler a run uses when none is asked for: the scheduler config's own class's, else ddim."""
    return _DEFAULT_SAMPLER.get(scheduler_class, "ddim")


class DiffusionPipeline:
    """Run a ``stable-diffusion`` or ``unet`` artifact.

    Randomness: ``numpy.random.default_rng(seed)`` (or the call's ``noise`` source) draws, in
    diffusers' order: img2img's latent sample from the VAE encoder's distribution, the initial
    latents (unless ``init_noise`` is given), then every ancestral-sampler noise.

    Memory (``memory=``, :class:`edgegen.types.MemoryMode`): "default" loads every component at
    construction and keeps them (the fastest); "low" loads each when its stage starts (text
    encoder, then U-Net, then VAE decoder) and frees it when the stage ends, so the process peaks at
    the largest stage instead of the sum; every call loads its components again (the OpenVINO model
    cache makes those loads cheaper). A Stable Diffusion decode is tiled automatically when the
    whole image would not fit the budget (:mod:`edgegen.pipelines.budget`).

    Attributes:
        class_names: class-conditional U-Nets: the name of each class label (index = label), else None.
        memory: the :class:`~edgegen.types.MemoryMode`; memory_budget: bytes or None.
    """

    def __init__(self, artifact: Artifact, *, backend: str | None = None, precision: str | None = None,
                 device: str | None = None, engine_hook: EngineHook | None = None, compute: str | None = None,
                 shapes: str = "auto", memory: str = "default", memory_budget: int | None = None):
        spec = artifact.spec
        self.artifact = artifact
        self.memory, self.memory_budget = memory_mode(memory), check_budget(memory_budget)
        # Loaded when first needed: the VAE encoder only serves img2img.
        self._load_options = dict(backend=backend, precision=precision, device=device, engine_hook=engine_hook,
                                  compute=compute, shapes=shapes, memory=self.memory.value)
        self.text_to_image = artifact.family == "stable-diffusion"
        names = ["text_encoder", "unet", "vae_decoder"] if self.text_to_image else ["unet"]
        if self.text_to_image and TINY_DECODER in spec.components:
            names.append(TINY_DECODER)
        self.engines = load_components(artifact, names, backend=backend, precision=precision, device=device,
                                       engine_hook=engine_hook, compute=compute, shapes=shapes,
                                       memory=self.memory.value)
        self.unet = self.engines["unet"]
        self.backend = self.unet.backend
        self.precision = self.unet.precision
        self.schedule = spec.schedule
        self.default_sampler = _DEFAULT_SAMPLER.get(spec.scheduler_class, "ddim")
        self.image, self.latent, self.conditioning = spec.image, spec.latent, spec.conditioning
        self.guidance_embedding = spec.guidance_embedding
        self._projection = None  # (matrix, bias) of previews, read or fitted at the first preview
        self.class_names = list(self.conditioning.class_names) if self.conditioning is not None else None
        if self.text_to_image:
            tok = spec.tokenizer
            self.tokenizer = ClipTokenizer(artifact.path / tok.file, max_length=tok.max_length, pad_id=tok.pad_id)

    def _latent_shape(self, batch: int, height: int | None, width: int | None) -> tuple[int, ...]:
        if not self.text_to_image:
            return (batch, *self.latent.shape)
        h, w, f = height or self.image.height, width or self.image.width, self.latent.scale_factor
        if h % f or w % f:
            raise EngineInputError(f"height/width: expected multiples of {f}, got {h}x{w}")
        return (batch, self.latent.channels, h // f, w // f)

    def _encode(self, prompts: Sequence[str], chunks: int) -> np.ndarray:
        """(B, chunks * max_length, hidden) float32 encodings, never truncated.

        Each (max_length - 2)-token window is encoded with BOS / EOS (:meth:`ClipTokenizer.chunks`)
        and the windows' ``last_hidden_state`` concatenated along the sequence axis (A1111 / compel
        long prompts; the U-Net's sequence dim is dynamic in edgegen's export).
        """
        ids = self.tokenizer.chunks(prompts, min_chunks=chunks)
        batch, count, length = ids.shape
        hidden = self.engines["text_encoder"]({"input_ids": ids.reshape(batch * count, length)})["last_hidden_state"]
        return hidden.reshape(batch, count * length, hidden.shape[-1])

    def __call__(self, prompt: str | Sequence[str] | None = None, *, negative_prompt: str | Sequence[str] | None = None,
                 class_label: int | Sequence[int] | None = None, num_inference_steps: int = 50,
                 sampler: str | None = None, sigmas: str | None = None, eta: float | None = None,
                 guidance_scale: float = 7.5, seed: int = 0, num_images: int | None = None, height: int | None = None,
                 width: int | None = None, init_noise: np.ndarray | None = None,
                 guidance_interval: tuple[float, float] | None | str = "default", callback=None,
                 tile_size: int | None = None, decoder: str = "full", init_image=None, strength: float | None = None,
                 noise: Noise | None = None) -> Generation:
        """Generate images.

        Args:
            prompt, negative_prompt: Stable Diffusion only: one text for all images or one per image;
                the negative prompt replaces the empty unconditional one (none for LCM-distilled U-Nets).
            class_label: class-conditional U-Nets only: one label (0..num_classes-1) for all images or
                one per image; default: cycle through the classes.
            num_inference_steps: >= 1 (and at most the training steps).
            sampler: ddpm, ddim, euler, euler-a, dpmpp-2m or lcm (:class:`edgegen.types.Sampler`); default
                from the scheduler config's class.
            sigmas: discrete, karras or exponential (:class:`edgegen.types.SigmaSchedule`), for the
                Euler samplers and dpmpp-2m; default the config's (``use_karras_sigmas`` ...).
            eta: ddim (default 0) and euler-a (default 1) noise share, finite and >= 0; an explicit 0
                is honoured (euler-a at eta 0 is Euler). Fixed for the others: ddpm and lcm 1, euler and
                dpmpp-2m 0.
            guidance_scale: CFG scale w (finite); 1 skips the unconditional pass. LCM-distilled U-Nets
                (``guidance_embedding``) take it as an input instead (one pass; LCM's default is 8.5).
            seed: seeds ``numpy.random.default_rng`` for the latents and the sampler noise.
            num_images: images to generate (default 1, or the batch of ``init_noise``).
            height, width: Stable Diffusion image size in pixels, multiples of the VAE factor.
            init_noise: (B, C, h, w) float32 finite N(0, I) initial latents replacing the seeded draw
                (scaled by the sampler's init sigma as diffusers does; img2img: the noise added).
            guidance_interval: (sigma_lo, sigma_hi], the noise levels where CFG applies
                (:mod:`edgegen.guidance`), for every conditioned model; None for every step; default
                the artifact's recommended interval (``conditioning.guidance_interval``), else every step.
            callback: ``callback(step, sigma, x0) -> bool | None`` after each step, with x0 the
                (B, C, h, w) float32 clean-latent estimate; ``False`` stops sampling: the last x0 is
                decoded and ``info`` says ``stopped_at_step`` (steps done).
            tile_size: Stable Diffusion only: decode in tiles of this many pixels square, a positive
                multiple of the VAE's scale factor (:func:`edgegen.tiling.decode_tiled`: overlaps of
                1/4 tile blended linearly), bounding the decoder's memory by the tile; None: whole,
                or tiled when the whole decode would exceed the memory budget (``info["tile_size"]``
                and ``info["tile_reason"]`` say which and why).
                Works with either decoder (seams measured in ``docs/tiny-decoder.md``).
            decoder: Stable Diffusion only: "full" (the VAE's decoder) or "tiny" (:class:`edgegen.types.Decoder`;
                the artifact's ``vae_decoder_tiny``, TAESD, from ``edgegen export --tiny-vae DIR``), fed the
                same latents: equal to diffusers' pipeline with ``vae=AutoencoderTiny(...)`` (2e-3).
            init_image, strength: Stable Diffusion img2img (SDEdit, Meng et al. 2021; diffusers'
                StableDiffusionImg2ImgPipeline, images equal to 2e-3 given the same noise): an image
                (path, Pillow image or (H, W, 3) / (N, H, W, 3) array, :func:`edgegen.images.read_image`)
                whose size is the output's (a multiple of the VAE factor), and ``strength`` in (0, 1]
                (default 0.8): the last ``int(steps * strength)`` steps run (:meth:`SamplingPlan.truncated`).
            noise: a ``noise(shape) -> float32 N(0, I)`` source for every draw in place of ``seed``
                (replay another library's generator, e.g. for parity).
        Returns:
            a :class:`Generation` with (B, H, W, C) float32 images in [0, 1]; in low-memory mode
            every component was released when it returns (or raises).
        Raises:
            EngineInputError: an argument out of range or of the wrong kind, naming it; ``decoder="tiny"``
                on an artifact without a tiny decoder (naming the export flag).
            NonFiniteError: ``init_noise`` holds NaN / Inf.
            ScheduleError: an unknown sampler / sigma schedule, steps above the training steps, or
                ``strength`` outside (0, 1] or leaving no step.
            ArtifactError: ``init_image`` on an artifact exported without ``vae_encoder``.
        """
        start = time.perf_counter()
        reset(self.engines)
        _check_numbers(num_inference_steps, eta, guidance_scale)
        self._check_tile_size(tile_size)
        vae = self._decoder_name(decoder)
        draw = _noise_source(noise, seed)
        plan = SamplingPlan.build(self.schedule, sampler or self.default_sampler, num_inference_steps, sigmas=sigmas)
        try:
            plan, latents, image = self._start(plan, init_image, strength, init_noise, num_images, height, width, draw)
            denoise, info = self._condition(plan, len(latents), prompt, negative_prompt, class_label, guidance_scale,
                                            guidance_interval)
            x0, stopped_at = _sample(plan, denoise, latents, eta, draw, callback, image)
            self._stage_done("unet")
            if image is not None:
                info.update(strength=0.8 if strength is None else strength,
                            init_image=str(init_image) if isinstance(init_image, (str, Path)) else None)
            info.update(model=self.artifact.family, seed=seed, sampler=plan.sampler.value,
                        sigmas=plan.sigma_schedule.value, steps=num_inference_steps,
                        eta=plan.default_eta() if eta is None else eta, backend=self.backend, precision=self.precision)
            if stopped_at is not None:
                info["stopped_at_step"] = stopped_at
            if vae == TINY_DECODER:
                info["decoder"] = Decoder.tiny.value
            images = self._decode(x0, tile_size, info, vae)
        finally:
            for name in list(self.engines):
                self._stage_done(name)
        return Generation(images, info, timings(self.engines, start))

    def _stage_done(self, name: str) -> None:
        """The component whose stage ended: freed in low-memory mode; in default mode kept loaded,
        its activation buffers freed (so the decode's do not add to the U-Net's)."""
        if self.memory is MemoryMode.low:
            self.engines[name].release()
        else:
            self.engines[name].trim()

    def preview(self, x0: np.ndarray, *, method: str | None = None) -> np.ndarray:
        """A cheap preview of x0 estimates (what ``callback(step, sigma, x0)`` receives).

        Args:
            x0: (B, C, h, w) float32 clean-latent estimate.
            method: "tiny": the artifact's tiny decoder (TAESD; close to the final image, costs one
                tiny decode, counted in the run's ``vae_decoder_tiny`` timings); "linear": the linear
                latent -> RGB projection (:mod:`edgegen.preview`; no engine call, colours and layout
                only: each latent pixel one f x f block); "full": the full decoder. None: "tiny"
                where the artifact has a tiny decoder, else "linear".
        Returns:
            (B, h*f, w*f, 3) float32 in [0, 1], f the VAE's scale factor. The linear projection is
            the manifest's ``preview`` record; an artifact exported before it existed gets one
            fitted here once, on its ``vae_decoder`` (16 small decodes).
        Raises:
            EngineInputError: not Stable Diffusion, an unknown method, "tiny" without a tiny
                decoder, or x0 not (B, C, h, w).
        """
        if not self.text_to_image:
            raise EngineInputError("preview: applies to Stable Diffusion latents, this is a bare U-Net")
        if method is None:
            method = "tiny" if TINY_DECODER in self.engines else "linear"
        if method not in ("linear", "tiny", "full"):
            raise EngineInputError(f"method: expected linear, tiny or full (or None), got {method!r}")
        if method != "linear":
            decoder = self._decoder_name(method)
            try:
                return self._decode(np.asarray(x0, np.float32), None, {}, decoder)
            finally:
                self._stage_done(decoder)  # low memory: loaded for the preview only
        if self._projection is None:
            stored = self.artifact.spec.preview
            if stored is None:
                vae = self.engines["vae_decoder"]
                stored = SimpleNamespace(**fit_projection(
                    lambda x: vae({"latents": x})["image"], channels=self.latent.channels,
                    scale_factor=self.latent.scale_factor, scaling_factor=self.latent.scaling_factor,
                    output_range=self.image.output_range))
                self._stage_done("vae_decoder")  # low memory: fitted once, mid-sampling; not kept
            self._projection = (stored.matrix, stored.bias)
        return project(x0, *self._projection, output_range=self.image.output_range, upscale=self.latent.scale_factor)

    def _decoder_name(self, decoder: str) -> str:
        """The component that decodes for ``decoder`` ("full" / "tiny"), checked."""
        try:
            choice = parse_enum(Decoder, decoder, "decoder")
        except ValueError as exc:
            raise EngineInputError(str(exc)) from None
        if choice is Decoder.full:
            return "vae_decoder"
        if not self.text_to_image:
            raise EngineInputError("decoder: 'tiny' applies to Stable Diffusion's VAE decode, this is a bare U-Net")
        if TINY_DECODER not in self.engines:
            raise EngineInputError(f"decoder: 'tiny' needs a {TINY_DECODER} component, this artifact has none "
                                   f"(has {sorted(self.artifact.spec.components)}); export it with "
                                   "`edgegen export --model sd --tiny-vae DIR` (DIR: a diffusers AutoencoderTiny, "
                                   "e.g. madebyollin/taesd)")
        return TINY_DECODER

    def _check_tile_size(self, tile_size: int | None) -> None:
        if tile_size is None:
            return
        if not self.text_to_image:
            raise EngineInputError(f"tile_size: applies to Stable Diffusion's VAE decode, this is a bare U-Net; "
                                   f"got {tile_size}")
        check_tile_size(tile_size, self.latent.scale_factor)

    def _start(self, plan: SamplingPlan, init_image, strength, init_noise, num_images, height, width,
               draw: Noise) -> tuple:
        """(plan, N(0, I) latents (B, C, h, w), img2img's clean latents (B, C, h, w) or None).

        img2img truncates the plan first (its strength checks cost nothing), then encodes.
        """
        if init_image is None:
            if strength is not None:
                raise EngineInputError(f"strength: applies to img2img (with init_image), got strength={strength!r} "
                                       f"and no init_image")
            return plan, self._initial_latents(init_noise, num_images, height, width, draw), None
        plan = plan.truncated(0.8 if strength is None else strength)
        image = self._encode_image(init_image, height, width, draw)
        count = len(image) if num_images is None and init_noise is None else num_images
        _, _, h, w = image.shape
        f = self.latent.scale_factor
        latents = self._initial_latents(init_noise, count, h * f, w * f, draw)
        if len(latents) % len(image):
            raise EngineInputError(f"init_image: expected 1 image or as many as the batch ({len(latents)}), "
                                   f"got {len(image)}")
        return plan, latents, np.concatenate([image] * (len(latents) // len(image)))

    def _encode_image(self, init_image, height, width, draw: Noise) -> np.ndarray:
        """(N, C, h, w) float32 clean latents of ``init_image``: ``scaling_factor * (mean + std * noise)``
        of the VAE encoder's Gaussian, as diffusers' ``retrieve_latents`` (sample mode) and
        ``prepare_latents``; pixels to [-1, 1] as ``VaeImageProcessor.preprocess`` (never resized)."""
        if not self.text_to_image:
            raise EngineInputError("init_image: img2img encodes with Stable Diffusion's VAE; this artifact is a "
                                   f"bare U-Net ({self.artifact.family}), got an init_image")
        images = read_image(init_image)
        _, h, w, _ = images.shape
        f = self.latent.scale_factor
        if (height or h, width or w) != (h, w):
            raise EngineInputError(f"init_image: expected {height or h}x{width or w} px (the height x width asked; "
                                   f"the image's size is the output's when none is given), got {h}x{w}")
        if h % f or w % f:
            raise EngineInputError(f"init_image: expected height and width multiples of {f} (the VAE's scale "
                                   f"factor), got {h}x{w}")
        pixels = np.ascontiguousarray((images * np.float32(2) - np.float32(1)).transpose(0, 3, 1, 2))
        out = self._vae_encoder()({"image": pixels})
        self._stage_done("vae_encoder")  # low memory: freed before the text encoder and U-Net load
        mean, std = out["latent_mean"], out["latent_std"]
        return (mean + std * draw(mean.shape)) * np.float32(self.latent.scaling_factor)

    def _vae_encoder(self):
        """The VAE encoder's engine, loaded on first use (text-to-image never loads it)."""
        if "vae_encoder" not in self.engines:
            if "vae_encoder" not in self.artifact.spec.components:
                raise ArtifactError(f"init_image: artifact '{self.artifact.path}' has no vae_encoder component "
                                    f"(exported before img2img); export it again with `edgegen export --model sd` "
                                    f"to run img2img")
            self.engines.update(load_components(self.artifact, ["vae_encoder"], **self._load_options))
        return self.engines["vae_encoder"]

    def _initial_latents(self, init_noise, num_images, height, width, draw: Noise) -> np.ndarray:
        """(B, C, h, w) float32 N(0, I): ``init_noise`` checked, or drawn from ``draw``."""
        if init_noise is None:
            count = 1 if num_images is None else num_images
            if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
                raise EngineInputError(f"num_images: expected an integer >= 1, got {num_images!r}")
            return np.asarray(draw(self._latent_shape(int(count), height, width)), dtype=np.float32)
        if not isinstance(init_noise, np.ndarray) or init_noise.dtype != np.float32 or init_noise.ndim != 4:
            got = f"{init_noise.dtype} {init_noise.shape}" if isinstance(init_noise, np.ndarray) else type(init_noise).__name__
            raise EngineInputError(f"init_noise: expected a float32 (B, C, h, w) array, got {got}")
        expected = self._latent_shape(init_noise.shape[0], height, width)
        if init_noise.shape != expected or init_noise.shape[0] < 1:
            raise EngineInputError(f"init_noise: expected float32 {expected}, got {init_noise.shape}")
        if num_images is not None and num_images != init_noise.shape[0]:
            raise EngineInputError(f"num_images: expected {init_noise.shape[0]} (the batch of init_noise) or None, "
                                   f"got {num_images!r}")
        check_finite({"init_noise": init_noise}, "pipeline call", "input")
        return np.ascontiguousarray(init_noise)

    def _condition(self, plan: SamplingPlan, batch: int, prompt, negative_prompt, class_label, guidance_scale,
                   guidance_interval) -> tuple:
        """The (guided) denoiser for this call and what it records in ``info``."""
        if self.text_to_image:
            if class_label is not None:
                raise EngineInputError("class_label: a Stable Diffusion artifact takes a text prompt, got a class label")
            cond, uncond, info = self._text_condition(prompt, negative_prompt, batch, guidance_scale)
            interval = None if guidance_interval == "default" else guidance_interval
            if self.guidance_embedding is not None:
                cond = self._embedded_guidance(cond, batch, guidance_scale, negative_prompt, interval)
        elif self.conditioning is not None:
            if prompt is not None or negative_prompt is not None:
                raise EngineInputError(f"prompt: this class-conditional U-Net takes class_label= (classes "
                                       f"{self.class_names}), got a prompt {prompt!r}")
            cond, uncond, info = self._class_condition(class_label, batch, guidance_scale)
            interval = self.conditioning.guidance_interval if guidance_interval == "default" else guidance_interval
        else:
            if prompt is not None or class_label is not None or negative_prompt is not None:
                raise EngineInputError("prompt / class_label: this unconditional U-Net takes no condition, got one")
            cond = None
        # Built after the condition: in low-memory mode the text encoder is freed before the U-Net loads.
        denoiser = plan.denoiser(self._network, self.schedule, self.unet.input("timestep").dtype)
        if cond is None:
            return denoiser, {}
        interval = None if interval is None else _interval(interval)
        guided = uncond is not None
        info.update(guidance_scale=guidance_scale if guided or self.guidance_embedding else 1.0,
                    guidance_interval=list(interval) if guided and interval else None)
        mode = batch_mode(self.unet.input("sample").shape[0], batch) if guided else "joint"
        return CFGDenoiser(denoiser, cond, uncond, guidance_scale, mode=mode, interval=interval), info

    def _network(self, feeds) -> np.ndarray:
        return self.unet(feeds)["noise_pred"]

    def _embedded_guidance(self, cond, batch: int, guidance_scale: float, negative_prompt, interval) -> dict:
        """LCM-distilled U-Nets: ``cond`` plus the w-embedding of ``guidance_scale`` (one U-Net call per
        step, no unconditional branch: LatentConsistencyModelPipeline). Refuses what needs that branch."""
        g = self.guidance_embedding
        for name, value in (("negative_prompt", negative_prompt), ("guidance_interval", interval)):
            if value is not None:
                raise EngineInputError(f"{name}: this LCM-distilled U-Net takes the guidance scale as an input "
                                       f"(no unconditional pass to steer or skip); expected None, got {value!r}")
        return {**cond, g.input: guidance_scale_embedding(guidance_scale, g.dim, batch)}

    def _text_condition(self, prompt, negative_prompt, batch: int, guidance_scale: float) -> tuple:
        prompts = self._as_list(prompt or "", batch, "prompt")
        guided = needs_unconditional(guidance_scale) and self.guidance_embedding is None
        negatives = self._as_list(negative_prompt or "", batch, "negative_prompt") if guided else []
        # Prompt and negative share one chunk count: CFG batches them along the batch axis.
        chunks = self.tokenizer.num_chunks(prompts + negatives)
        cond = {"encoder_hidden_states": self._encode(prompts, chunks)}
        uncond = {"encoder_hidden_states": self._encode(negatives, chunks)} if guided else None
        self._stage_done("text_encoder")
        info = {"prompt": prompts[0], "negative_prompt": negative_prompt}
        if chunks > 1:
            info["prompt_chunks"] = chunks
        return cond, uncond, info

    def _class_condition(self, class_label, batch: int, guidance_scale: float) -> tuple:
        labels = self._class_labels(class_label, batch)
        null = self.conditioning.null_class
        uncond = None
        if null is not None and needs_unconditional(guidance_scale):
            uncond = {"class_labels": np.full(batch, null, np.int64)}
        names = self.class_names
        info = {"class_labels": ",".join(str(int(v)) for v in labels),
                "prompt": ",".join(names[int(v)] if int(v) < len(names) else str(int(v)) for v in labels)}
        return {"class_labels": labels}, uncond, info

    def _decode(self, x0: np.ndarray, tile_size: int | None, info: dict, decoder: str = "vae_decoder") -> np.ndarray:
        """(B, C, h, w) latents -> (B, H, W, C) images in [0, 1]; in tiles of ``tile_size`` px when
        given, else of the size :meth:`_auto_tile` picks (recorded in ``info``).

        ``decoder`` names the component: ``vae_decoder`` or ``vae_decoder_tiny``, which take the same
        ``latents`` (x0 / scaling_factor) and give images in the same range."""
        if self.text_to_image:
            scaled = x0 / np.float32(self.latent.scaling_factor)
            vae = self.engines[decoder]
            if tile_size is None:
                tile_size = self._auto_tile(decoder, scaled.shape, info)
            else:
                info.update(tile_size=tile_size, tile_reason="given")
            if tile_size is None:
                x0 = vae({"latents": scaled})["image"]
            else:
                x0 = decode_tiled(lambda x: vae({"latents": x})["image"], scaled, tile_size=tile_size,
                                  scale_factor=self.latent.scale_factor)
        return to_unit_range(x0, self.image.output_range)

    def _auto_tile(self, decoder: str, shape: tuple[int, ...], info: dict) -> int | None:
        """The tile size the memory budget asks for (None: whole) for the ``decoder`` component, with why in ``info``."""
        f = self.latent.scale_factor
        own = shape[0] == 1 and (shape[2] * f, shape[3] * f) == (self.image.height, self.image.width)
        self.engines[decoder].engine  # loaded first: its weights count in what is resident
        budget, source = decode_budget(self.memory, self.memory_budget, own_size=own)
        tile, why = auto_tile(self.artifact.component_path(decoder), shape, tensor="latents", scale_factor=f,
                              out_channels=self.image.channels or 3, budget=budget, source=source,
                              fused_attention=self.backend == "openvino",
                              static=self.engines[decoder].static)
        if budget is not None:
            info.update(why)
        return tile

    def _class_labels(self, class_label, batch: int) -> np.ndarray:
        """(batch,) int64 labels from ``class_label``, or a cycle through the classes."""
        n = len(self.class_names)
        if class_label is None:
            return (np.arange(batch) % n).astype(np.int64)
        values = np.asarray(class_label)
        if values.dtype.kind not in "iu" or values.ndim > 1 or (values.ndim == 1 and len(values) != batch):
            raise EngineInputError(f"class_label: expected an integer or {batch} integers in 0..{n - 1}, "
                                   f"got {class_label!r}")
        labels = np.broadcast_to(values.astype(np.int64), (batch,)).copy()
        if labels.min() < 0 or labels.max() >= n:
            raise EngineInputError(f"class_label: expected values in 0..{n - 1}, got {labels.tolist()}")
        return labels

    @staticmethod
    def _as_list(value: str | Sequence[str], batch: int, what: str) -> list[str]:
        if isinstance(value, str):
            return [value] * batch
        value = list(value)
        if len(value) != batch:
            raise EngineInputError(f"{what}: expected one string or {batch} strings, got {len(value)}")
        return value


class _Progress:
    """The caller's callback, remembering the last x0 estimate and whether it asked to stop."""

    def __init__(self, callback):
        self.callback, self.x0, self.stopped_at = callback, None, None

    def __call__(self, step: int, sigma: float, x0: np.ndarray) -> bool:
        self.x0 = x0
        if self.callback is not None and self.callback(step, sigma, x0) is False:
            self.stopped_at = step + 1
            return False
        return True


def _noise_source(noise: Noise | None, seed) -> Noise:
    if noise is None:
        return gaussian_noise(np.random.default_rng(seed))
    if not callable(noise):
        raise EngineInputError(f"noise: expected a callable noise(shape) -> float32 array, or None, got "
                               f"{type(noise).__name__}")
    return lambda shape: np.asarray(noise(shape), dtype=np.float32)


def _sample(plan, denoise, latents: np.ndarray, eta, draw: Noise, callback,
            init_latents: np.ndarray | None = None) -> tuple[np.ndarray, int | None]:
    """Run the sampler: (x0, None), or (the last x0 estimate, steps done) when ``callback`` stopped it."""
    progress = _Progress(callback)
    try:
        x0 = plan.run(denoise, latents, eta=eta, noise=draw, callback=progress, init_latents=init_latents)
    except ValueError as exc:  # eta for a sampler with a fixed one
        raise EngineInputError(str(exc)) from None
    if progress.stopped_at is not None:
        return progress.x0, progress.stopped_at
    return x0, None


def check_budget(budget: int | None) -> int | None:
    """``memory_budget``: None or a positive number of bytes; EngineInputError otherwise."""
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget <= 0:
        raise EngineInputError(f"memory_budget: expected a positive number of bytes or None, got {budget!r}")
    return int(budget)


def _check_numbers(steps, eta, guidance_scale) -> None:
    """EngineInputError naming the first of the call's numeric arguments out of range."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise EngineInputError(f"num_inference_steps: expected an integer >= 1, got {steps!r}")
    if not isinstance(guidance_scale, numbers.Real) or not math.isfinite(guidance_scale):
        raise EngineInputError(f"guidance_scale: expected a finite number, got {guidance_scale!r}")
    if eta is not None and (not isinstance(eta, numbers.Real) or not math.isfinite(eta) or eta < 0):
        raise EngineInputError(f"eta: expected a finite number >= 0 (or None for the sampler's default), got {eta!r}")


def _interval(interval) -> tuple[float, float]:
    try:
        return check_interval(interval)
    except (TypeError, ValueError) as exc:
        raise EngineInputError(str(exc) if isinstance(exc, ValueError) else
                               f"guidance_interval: expected (sigma_lo, sigma_hi), got {interval!r}") from None
