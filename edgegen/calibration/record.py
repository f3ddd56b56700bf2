"""Calibration data: feeds recorded from the real FP32 trajectory, or drawn from a model's input law.

Every function returns ``dict[component, list[feeds]]`` where feeds are ``dict[str, np.ndarray]``
keyed by graph input name — what ``nncf.Dataset`` and ONNX Runtime's
``CalibrationDataReader`` consume. Everything is seeded: the same arguments give the same
arrays, bit for bit.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import EdgegenError
from ..progress import ProgressCallback, silent
from ..runtimes.base import Engine

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


class FeedStore(Sequence[Feeds]):
    """Feeds dicts kept on disk instead of in memory: a list-like sequence for calibration.

    Item ``i`` is stored as one ``.npy`` file per input (``directory/00000-0.npy`` ...) and read
    back memory-mapped (read-only arrays), so holding a whole calibration set costs no memory at
    SD 1.5 size, and an item costs only while a consumer uses it. ``nncf.Dataset`` and ONNX
    Runtime's reader take it like a list of dicts; iterating reads each item when it is reached.
    The files live until :meth:`clear` or until the directory is removed (the caller owns it).
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._names: list[tuple[str, ...]] = []

    def _file(self, index: int, position: int) -> Path:
        # Graph input names may hold characters a file name cannot; the position stands in.
        return self.directory / f"{index:05d}-{position}.npy"

    def append(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Write a copy of ``feeds`` (graph input name -> array) as the next item."""
        index = len(self._names)
        for position, array in enumerate(feeds.values()):
            np.save(self._file(index, position), np.ascontiguousarray(array))
        self._names.append(tuple(feeds))

    def __len__(self) -> int:
        return len(self._names)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        names = self._names[index]
        index = range(len(self))[index]
        return {name: np.load(self._file(index, p), mmap_mode="r") for p, name in enumerate(names)}

    def clear(self) -> None:
        """Delete every item's files."""
        for index, names in enumerate(self._names):
            for position in range(len(names)):
                self._file(index, position).unlink(missing_ok=True)
        self._names.clear()


class FeedRecorder:
    """An engine hook that keeps a copy of every feeds dict each component's engine is called with.

    Pass it when a pipeline is built (``DiffusionPipeline(art, engine_hook=recorder)``); after
    sampling, ``recorder.feeds[component]`` lists the feeds in call order (graph input name ->
    array, copied: the pipeline may reuse its buffers). With ``directory``, the copies go to
    disk (a :class:`FeedStore` per component under ``directory/<component>``) instead of memory.
    With ``outputs``, ``recorder.outputs[component]`` keeps each call's outputs the same way
    (the FP32 reference of the INT8 gate, so that no FP32 engine stays loaded beside INT8).
    :meth:`clear` empties the lists, :meth:`stop` ends recording (the engines keep running).
    """

    def __init__(self, directory: str | Path | None = None, *, outputs: bool = False) -> None:
        self.directory, self.keep_outputs = (Path(directory) if directory is not None else None), outputs
        self.feeds: dict[str, list[Feeds] | FeedStore] = {}
        self.outputs: dict[str, list[Feeds] | FeedStore] = {}
        self.recording = True

    def _sink(self, kind: dict, name: str, sub: str):
        if name not in kind:
            kind[name] = [] if self.directory is None else FeedStore(self.directory / sub / name)
        return kind[name]

    def __call__(self, name: str, engine: Engine) -> Engine:
        outputs = self._sink(self.outputs, name, "outputs") if self.keep_outputs else None
        return _RecordingEngine(engine, self, self._sink(self.feeds, name, "feeds"), outputs)

    def clear(self) -> None:
        for items in (*self.feeds.values(), *self.outputs.values()):
            items.clear()

    def stop(self) -> None:
        self.recording = False


class _RecordingEngine:
    """An :class:`~edgegen.runtimes.Engine` that appends a copy of its feeds to ``sink`` (and of
    its outputs to ``outputs``, when given) while its recorder records, then runs the wrapped engine."""

    def __init__(self, engine: Engine, recorder: FeedRecorder, sink, outputs=None):
        self.engine, self._recorder, self._sink, self._outputs = engine, recorder, sink, outputs
        self.backend, self.precision = engine.backend, engine.precision
        self.inputs, self.outputs = engine.inputs, engine.outputs

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        recording = self._recorder.recording
        if recording:
            self._sink.append({k: np.array(v, copy=True) for k, v in feeds.items()})
        result = self.engine(feeds)
        if recording and self._outputs is not None:
            self._outputs.append({k: np.array(v, copy=True) for k, v in result.items()})
        return result


def record_diffusion(artifact: Artifact, *, samples: int, sampler: str, steps: int, seed: int = 0,
                     guidance_scale: float = 7.5, prompts: Sequence[str] | None = None,
                     backend: str | None = None, height: int | None = None, width: int | None = None,
                     directory: str | Path | None = None,
                     progress: ProgressCallback | None = None) -> dict[str, Sequence[Feeds]]:
    """Run the FP32 pipeline ``samples`` times (seeds ``seed .. seed+samples-1``) and record feeds.

    For SD, image i uses prompt ``prompts[i % len(prompts)]``; with ``guidance_scale != 1``
    both CFG branches are recorded (in one batch-of-2 feed where the U-Net takes it).
    Returns feeds per component: ``unet`` gets ``samples * steps`` items; SD also gets
    ``text_encoder`` and ``vae_decoder`` items. ``progress`` hears ("calibration: recording
    FP32 trajectories (steps)", done, samples * steps) after every sampler step. With
    ``directory``, the feeds are written there as they are recorded (:class:`FeedStore` per
    component, memory-mapped on read) instead of being held in memory; the caller removes it.
    """
    from ..pipelines import DiffusionPipeline

    report = progress or silent
    recorder = FeedRecorder(directory)
    pipe = DiffusionPipeline(artifact, backend=backend, precision="fp32", engine_hook=recorder)
    prompts = list(prompts or default_prompts())
    stage, done, total = "calibration: recording FP32 trajectories (steps)", [0], samples * steps

    def step(*_):
        done[0] += 1
        report(stage, done[0], total)

    report(stage, 0, total)
    for i in range(samples):
        sample_diffusion(pipe, index=i, seed=seed + i, steps=steps, sampler=sampler, guidance_scale=guidance_scale,
                         prompts=prompts, height=height, width=width, callback=step)
    return {name: recorder.feeds.get(name, []) for name in pipe.engines}


def sample_diffusion(pipe, *, index: int, seed: int, steps: int, sampler: str, guidance_scale: float,
                     prompts: Sequence[str], height: int | None = None, width: int | None = None,
                     callback: Callable | None = None) -> np.ndarray:
    """One calibration / gate sample: SD uses ``prompts[index % len(prompts)]``; a class-conditional
    U-Net draws one image per class; an unconditional one a single image. ``callback`` is the
    pipeline's per-step callback. Returns (B, H, W, C) images."""
    if pipe.text_to_image:
        return pipe(prompts[index % len(prompts)], num_inference_steps=steps, sampler=sampler, seed=seed,
                    guidance_scale=guidance_scale, height=height, width=width, callback=callback).images
    return pipe(num_inference_steps=steps, sampler=sampler, seed=seed, guidance_scale=guidance_scale,
                num_images=pipe.conditioning.num_classes if pipe.conditioning is not None else 1,
                callback=callback).images


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
    """Write recorded feeds as ``out/<component>/feed-00000.npz`` ... (what ``edgegen calibrate`` writes),
    each file atomically."""
    from ..atomic import atomic_open

    out = Path(out)
    for component, items in feeds.items():
        folder = out / component
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(items):
            with atomic_open(folder / f"feed-{i:05d}.npz", "wb") as f:
                np.savez(f, **item)
    return out
