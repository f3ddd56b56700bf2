"""One-shot generators: a GAN generator (z -> image) or a VAE decoder (latents -> image)."""

from __future__ import annotations

import time

import numpy as np

from ..artifact import Artifact
from ..errors import EngineInputError, InputError, NonFiniteError
from ..images import to_unit_range
from ..runtimes.base import nonfinite_detail
from ..tiling import check_tile_size, decode_tiled
from ..types import MemoryMode
from .base import EngineHook, Generation, load_components, memory_mode, reset, timings
from .budget import auto_tile, decode_budget


def check_latents(value: np.ndarray, expected: tuple[int | None, ...], name: str = "latents",
                  where: str = "") -> np.ndarray:
    """Check user-given latents / noise and return them as C-contiguous float32.

    Args:
        value: (B, *expected) real floating-point array (float16/32/64), B >= 1, finite.
        expected: the per-image shape; None for a dim any size fits.
        name: how the caller calls it in messages ("latents", or a CLI flag like "--latents").
        where: appended to the shape message (e.g. " at 256x256 px").
    Raises:
        InputError: not a real float array (int, bool, complex, object), empty, or wrong shape.
        NonFiniteError: NaN or Inf anywhere, with counts and the first bad index.
    """
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        got = f"{value.dtype} {tuple(value.shape)}" if isinstance(value, np.ndarray) else type(value).__name__
        raise InputError(f"{name}: expected a float32 array, got {got}")
    dims = ", ".join("?" if d is None else str(d) for d in expected)
    fits = value.ndim == len(expected) + 1 and all(w is None or w == g for w, g in zip(expected, value.shape[1:]))
    if not fits or value.size == 0:
        raise InputError(f"{name}: expected a non-empty float32 (B, {dims}) array{where}, "
                         f"got {value.dtype} {tuple(value.shape)}")
    detail = nonfinite_detail(value)
    if detail:
        raise NonFiniteError(name, "", "", detail)
    return np.ascontiguousarray(value, dtype=np.float32)


class DecoderPipeline:
    """Run a ``generator`` or ``vae-decoder`` artifact.

    Latents are drawn N(0, I) from ``numpy.random.default_rng(seed)`` unless given. ``memory="low"``
    loads the engine at each call and frees it after (see :class:`DiffusionPipeline`); a VAE decode
    is tiled automatically when the whole image would not fit ``memory_budget`` (bytes of process
    RSS; default: what the machine has available).
    """

    def __init__(self, artifact: Artifact, *, backend: str | None = None, precision: str | None = None,
                 device: str | None = None, engine_hook: EngineHook | None = None, compute: str | None = None,
                 shapes: str = "auto", memory: str = "default", memory_budget: int | None = None):
        from .diffusion import check_budget

        self.artifact = artifact
        self.memory, self.memory_budget = memory_mode(memory), check_budget(memory_budget)
        self.component = "generator" if artifact.family == "generator" else "vae_decoder"
        self.engines = load_components(artifact, [self.component], backend=backend, precision=precision, device=device,
                                       engine_hook=engine_hook, compute=compute, shapes=shapes,
                                       memory=self.memory.value)
        self.engine = self.engines[self.component]
        self.backend = self.engine.backend
        self.precision = self.engine.precision
        self.input_name = artifact.spec.components[self.component].inputs[0].name
        self.output_range = artifact.spec.image.output_range
        self.latent = artifact.spec.latent

    def latent_shape(self, num_images: int, height: int | None = None, width: int | None = None) -> tuple[int, ...]:
        """Shape of the latents for ``num_images`` (for a vae-decoder, at ``height`` x ``width`` pixels).

        Raises:
            EngineInputError: height / width not a positive multiple of the decoder's scale factor.
        """
        if self.component == "generator":
            return (num_images, *self.latent.shape)
        image, f = self.artifact.spec.image, self.latent.scale_factor or 8
        h = image.height if height is None else height
        w = image.width if width is None else width
        if h <= 0 or w <= 0 or h % f or w % f:
            raise EngineInputError(f"height/width: expected positive multiples of the decoder's scale factor {f}, "
                                   f"got {h}x{w}")
        return (num_images, self.latent.channels, h // f, w // f)

    def __call__(self, *, num_images: int = 1, seed: int = 0, latents: np.ndarray | None = None,
                 height: int | None = None, width: int | None = None, tile_size: int | None = None) -> Generation:
        """Generate images.

        Args:
            latents: (B, ...) float32 z (generator) or raw latents (vae-decoder, divided by the
                manifest's ``scaling_factor`` before decoding); None draws them from ``seed``.
            tile_size: vae-decoder only: decode in tiles of this many pixels square (a positive
                multiple of the scale factor; :func:`edgegen.tiling.decode_tiled`), bounding the
                decoder's memory by the tile; None decodes whole.
        Returns:
            a :class:`Generation` with (B, H, W, C) float32 images in [0, 1].
        Raises:
            InputError: ``tile_size`` on a generator, or not a positive multiple of the scale factor.
            InputError / NonFiniteError: latents not a non-empty real float array of the
                expected shape, or holding NaN / Inf (:func:`check_latents`); NonFiniteError
                when the decoder outputs NaN / Inf.
        """
        start = time.perf_counter()
        if tile_size is not None and self.component == "generator":
            raise InputError(f"tile_size: applies to VAE decoders, not to a generator; got {tile_size}")
        if tile_size is not None:
            check_tile_size(tile_size, self.latent.scale_factor or 8)
        reset(self.engines)
        if latents is None:
            shape = self.latent_shape(num_images, height, width)
            latents = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
        else:
            per_image = self.latent_shape(1, height, width)[1:]
            if self.component == "vae_decoder" and height is None and width is None:
                per_image = (per_image[0], None, None)  # the latents set the size
            latents = check_latents(latents, per_image, "latents")
        scaling = float(self.latent.scaling_factor)
        if scaling != 1.0:
            latents = latents / np.float32(scaling)
        info = {"model": self.artifact.family, "seed": seed, "backend": self.backend, "precision": self.precision}
        try:
            images = to_unit_range(self._decode(latents, tile_size, info), self.output_range)
        finally:
            if self.memory is MemoryMode.low:
                self.engine.release()
        return Generation(images, info, timings(self.engines, start))

    def _decode(self, latents: np.ndarray, tile_size: int | None, info: dict) -> np.ndarray:
        """(B, C, h, w) scaled latents -> the engine's (B, C_out, H, W) output, whole or in tiles
        (of ``tile_size``, or as the memory budget asks for a VAE decoder; recorded in ``info``)."""
        def decode(x: np.ndarray) -> np.ndarray:
            return next(iter(self.engine({self.input_name: x}).values()))

        if tile_size is None and self.component == "vae_decoder":
            tile_size = self._auto_tile(latents.shape, info)
        elif tile_size is not None:
            info.update(tile_size=tile_size, tile_reason="given")
        if tile_size is None:
            return decode(latents)
        return decode_tiled(decode, latents, tile_size=tile_size, scale_factor=self.latent.scale_factor or 8)

    def _auto_tile(self, shape: tuple[int, ...], info: dict) -> int | None:
        """The tile size the memory budget asks for (None: whole), with why in ``info``."""
        image, f = self.artifact.spec.image, self.latent.scale_factor or 8
        own = shape[0] == 1 and (shape[2] * f, shape[3] * f) == (image.height, image.width)
        self.engine.engine  # loaded first: its weights count in what is resident
        budget, source = decode_budget(self.memory, self.memory_budget, own_size=own)
        tile, why = auto_tile(self.artifact.component_path(self.component), shape, tensor=self.input_name,
                              scale_factor=f, out_channels=image.channels or 3, budget=budget, source=source,
                              fused_attention=self.backend == "openvino",
                              static=self.engine.static)
        if budget is not None:
            info.update(why)
        return tile
