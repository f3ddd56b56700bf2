"""One-shot generators: a GAN generator (z -> image) or a VAE decoder (latents -> image)."""

from __future__ import annotations

import time

import numpy as np

from ..artifact import Artifact
from ..errors import EngineInputError
from ..images import to_unit_range
from .base import EngineHook, Generation, load_components, reset, timings


class DecoderPipeline:
    """Run a ``generator`` or ``vae-decoder`` artifact.

    Latents are drawn N(0, I) from ``numpy.random.default_rng(seed)`` unless given.
    """

    def __init__(self, artifact: Artifact, *, backend: str | None = None, precision: str | None = None,
                 device: str | None = None, engine_hook: EngineHook | None = None):
        self.artifact = artifact
        self.component = "generator" if artifact.family == "generator" else "vae_decoder"
        self.engines = load_components(artifact, [self.component], backend=backend, precision=precision, device=device,
                                       engine_hook=engine_hook)
        self.engine = self.engines[self.component]
        self.backend = self.engine.engine.backend
        self.precision = self.engine.engine.precision
        self.input_name = self.engine.inputs[0].name
        m = artifact.manifest
        self.output_range = m["image"]["output_range"]
        self.latent = m["latent"]

    def latent_shape(self, num_images: int, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        """Shape of the latents for ``num_images`` (for a vae-decoder, at ``height`` x ``width`` pixels)."""
        if self.component == "generator":
            return (num_images, *self.latent["shape"])
        image = self.artifact.manifest["image"]
        h, w, f = height or image["height"], width or image["width"], self.latent["scale_factor"]
        if h % f or w % f:
            raise EngineInputError(f"height/width: expected multiples of the decoder's scale factor {f}, got {h}x{w}")
        return (num_images, self.latent["channels"], h // f, w // f)

    def __call__(self, *, num_images: int = 1, seed: int = 0, latents: np.ndarray | None = None,
                 height: int | None = None, width: int | None = None) -> Generation:
        """Generate images.

        Args:
            latents: (B, ...) float32 z (generator) or raw latents (vae-decoder, divided by the
                manifest's ``scaling_factor`` before decoding); None draws them from ``seed``.
        Returns:
            a :class:`Generation` with (B, H, W, C) float32 images in [0, 1].
        """
        start = time.perf_counter()
        reset(self.engines)
        if latents is None:
            shape = self.latent_shape(num_images, height, width)
            latents = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        latents = np.ascontiguousarray(latents, dtype=np.float32)
        scaling = float(self.latent.get("scaling_factor", 1.0))
        if scaling != 1.0:
            latents = latents / np.float32(scaling)
        out = self.engine({self.input_name: latents})
        images = to_unit_range(next(iter(out.values())), self.output_range)
        info = {"model": self.artifact.family, "seed": seed, "backend": self.backend, "precision": self.precision}
        return Generation(images, info, timings(self.engines, start))
