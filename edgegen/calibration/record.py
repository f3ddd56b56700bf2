"""Calibration data: feeds recorded from the real FP32 trajectory, or drawn from a model's input law.

Every function returns ``dict[component, list[feeds]]`` where feeds are ``dict[str, np.ndarray]``
keyed by graph input name — what ``nncf.Dataset`` and ONNX Runtime's
``CalibrationDataReader`` consume. Everything is seeded: the same arguments give the same
arrays, bit for bit.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import EdgegenError

Feeds = dict[str, np.ndarray]


def default_prompts() -> list[str]:
    """The prompt list shipped with edgegen for text-to-image calibration (varied subjects and styles)."""
    text = resources.files("edgegen.calibration").joinpath("prompts.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_prompts(path: str | Path | None) -> list[str]:
    if path is None:
        return default_prompts()
    prompts = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not prompts:
        raise EdgegenError(f"--calibration-prompts: expected one prompt per line, got an empty file '{path}'")
    return prompts


class _Recorder:
    """Wraps a pipeline engine and keeps a copy of every feeds dict it is called with."""

    def __init__(self, engine):
        self.engine, self.feeds = engine, []
        self.inputs, self.outputs = engine.inputs, engine.outputs

    def __call__(self, feeds: Mapping[str, np.ndarray]):
        self.feeds.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        return self.engine(feeds)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def record_diffusion(artifact: Artifact, *, samples: int, sampler: str, steps: int, seed: int = 0,
                     guidance_scale: float = 7.5, prompts: Sequence[str] | None = None,
                     backend: str | None = None, height: int | None = None, width: int | None = None
                     ) -> dict[str, list[Feeds]]:
    """Run the FP32 pipeline ``samples`` times (seeds ``seed .. seed+samples-1``) and record feeds.

    For SD, image i uses prompt ``prompts[i % len(prompts)]``; with ``guidance_scale != 1``
    both CFG branches are recorded (in one batch-of-2 feed where the U-Net takes it).
    Returns feeds per component: ``unet`` gets ``samples * steps`` items; SD also gets
    ``text_encoder`` and ``vae_decoder`` items.
    """
    from ..pipelines import DiffusionPipeline

    pipe = DiffusionPipeline(artifact, backend=backend, precision="fp32")
    for name in pipe.engines:
        pipe.engines[name].engine = _Recorder(pipe.engines[name].engine)
    prompts = list(prompts or default_prompts())
    for i in range(samples):
        sample_diffusion(pipe, index=i, seed=seed + i, steps=steps, sampler=sampler, guidance_scale=guidance_scale,
                         prompts=prompts, height=height, width=width)
    return {name: e.engine.feeds for name, e in pipe.engines.items()}


def sample_diffusion(pipe, *, index: int, seed: int, steps: int, sampler: str, guidance_scale: float,
                     prompts: Sequence[str], height: int | None = None, width: int | None = None) -> np.ndarray:
    """One calibration / gate sample: SD uses ``prompts[index % len(prompts)]``; a class-conditional
    U-Net draws one image per class; an unconditional one a single image. Returns (B, H, W, C) images."""
    if pipe.text_to_image:
        return pipe(prompts[index % len(prompts)], num_inference_steps=steps, sampler=sampler, seed=seed,
                    guidance_scale=guidance_scale, height=height, width=width).images
    return pipe(num_inference_steps=steps, sampler=sampler, seed=seed, guidance_scale=guidance_scale,
                num_images=int(pipe.conditioning["num_classes"]) if pipe.conditioning else 1).images


def gaussian_feeds(input_name: str, shape: Sequence[int], *, samples: int, batch: int = 8, seed: int = 0) -> list[Feeds]:
    """``samples`` N(0, I) float32 items of ``shape`` (without batch), grouped ``batch`` per feed."""
    rng = np.random.default_rng(seed)
    out, left = [], samples
    while left > 0:
        n = min(batch, left)
        out.append({input_name: rng.standard_normal((n, *shape), dtype=np.float32)})
        left -= n
    return out


def load_feeds_dir(path: str | Path, input_name: str | None = None) -> list[Feeds]:
    """Read calibration data from a directory, sorted by file name.

    ``.npz`` files hold whole feeds dicts; ``.npy`` files hold the single input ``input_name``
    (a leading batch dim is added when missing).

    Raises:
        EdgegenError: not a directory, or no .npy / .npz inside.
    """
    path = Path(path)
    if not path.is_dir():
        raise EdgegenError(f"--calibration-data: expected a directory of .npy/.npz files, got '{path}'")
    feeds = []
    for file in sorted(path.iterdir()):
        if file.suffix == ".npz":
            with np.load(file) as data:
                feeds.append({k: data[k] for k in data.files})
        elif file.suffix == ".npy":
            if input_name is None:
                raise EdgegenError(f"--calibration-data: '{file.name}' is a bare array; expected .npz feeds "
                                   "for a model with several inputs")
            array = np.load(file).astype(np.float32)
            feeds.append({input_name: array})
    if not feeds:
        raise EdgegenError(f"--calibration-data: expected .npy or .npz files in '{path}', found none")
    return feeds


def save_feeds_dir(feeds: dict[str, list[Feeds]], out: str | Path) -> Path:
    """Write recorded feeds as ``out/<component>/feed-00000.npz`` ... (what ``edgegen calibrate`` writes)."""
    out = Path(out)
    for component, items in feeds.items():
        folder = out / component
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(items):
            np.savez(folder / f"feed-{i:05d}.npz", **item)
    return out
