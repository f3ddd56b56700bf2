"""`edgegen bench`: measure artifacts per backend and precision, compare quality with FP32, write reports."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import EdgegenError
from ..metrics import classify, frechet_distance, image_figures
from ..progress import ProgressCallback, silent


@dataclass(frozen=True)
class BenchOptions:
    """What to measure.

    Attributes:
        backends: engine backends; each artifact is run on each.
        precisions: None = fp32 plus every stored variant (int8) the backend can run.
        shapes: OpenVINO shape modes (:class:`~edgegen.types.ShapeMode`), one row each
            (``("static", "dynamic")`` reports both); other backends get one row, "auto".
        steps: diffusion steps; runs / warmup: measured and discarded generations.
        num_images: images per generation (the quality comparison uses them all).
        metric_model: optional classifier ONNX: input images (N, C, H, W) in [0, 1]; output 0
            logits or log-probabilities, output 1 (optional) features for the Fréchet distance.
        memory: memory modes (:class:`edgegen.types.MemoryMode`), each measured per backend and precision.
    """

    backends: tuple[str, ...] = ("openvino",)
    precisions: tuple[str, ...] | None = None
    shapes: tuple[str, ...] = ("auto",)
    steps: int = 20
    runs: int = 3
    warmup: int = 1
    seed: int = 0
    num_images: int = 4
    prompt: str = "a lighthouse on a cliff at sunset"
    guidance_scale: float = 7.5
    sampler: str | None = None
    height: int | None = None
    width: int | None = None
    metric_model: Path | None = None
    memory: tuple[str, ...] = ("default",)


def machine() -> dict:
    """CPU model, core count, OS and backend versions."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for name in ("numpy", "onnxruntime", "openvino"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions}


def _size_mb(art: Artifact, precision: str, backend: str) -> float:
    """Megabytes of the files the configuration loads (model files and their weights beside them)."""
    total = 0
    for name in art.spec.components:
        try:
            path = art.component_path(name, None if precision in ("fp32", "bf16") else precision, backend)
        except EdgegenError:
            path = art.component_path(name, None, backend)
        for p in (path, path.with_suffix(".bin") if path.suffix == ".xml" else None, Path(f"{path}.data")):
            if p is not None and p.is_file():
                total += p.stat().st_size
    return total / 2**20


def _configs(art: Artifact, opts: BenchOptions) -> list[tuple[str, str, str]]:
    """(backend, precision, shapes, memory) of every row for this artifact."""
    configs = []
    for backend in opts.backends:
        precisions = opts.precisions or ("fp32", *[p for p in ("int8",) if any(
            art.has_variant(n, p, backend) for n in art.spec.components)])
        modes = opts.shapes if backend == "openvino" else ("auto",)
        configs += [(backend, p, m, memory) for p in precisions for m in modes for memory in opts.memory]
    return configs


def _measure(art: Artifact, config: tuple[str, str, str, str], opts: BenchOptions,
             stem: Path) -> tuple[dict, np.ndarray]:
    """Run one configuration in a fresh worker process; returns its figures and its last images.

    A fresh interpreter (``python -m edgegen.bench.worker``), never a fork of this process, so
    nothing loaded here (torch, other engines) counts in the worker's memory; the worker reports
    its own peak (see :mod:`edgegen.bench.worker`). ``stem``: where its files go (+ .json, .npy).
    """
    backend, precision, shapes, memory = config
    cfg = {"artifact": str(art.path), "backend": backend, "precision": precision, "shapes": shapes, "steps": opts.steps,
           "runs": opts.runs, "warmup": opts.warmup, "seed": opts.seed, "num_images": opts.num_images,
           "prompt": opts.prompt, "guidance_scale": opts.guidance_scale, "sampler": opts.sampler,
           "height": opts.height, "width": opts.width, "memory": memory,
           "images_out": str(stem.with_suffix(".npy")), "result_out": str(stem.with_suffix(".json"))}
    cfg_path = stem.with_suffix(".cfg.json")
    cfg_path.write_text(json.dumps(cfg))
    proc = subprocess.run(worker_command(cfg_path), capture_output=True, text=True)
    if proc.returncode != 0:
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
        raise EdgegenError(f"bench of '{art.path}' on {backend} {precision} (shapes {shapes}, {memory} memory) failed: {last}")
    figures = json.loads(Path(cfg["result_out"]).read_text())
    tiny = Path(cfg["images_out"]).with_suffix(".tiny.npy")
    if tiny.is_file():
        figures["images_tiny"] = np.load(tiny)
    return figures, np.load(cfg["images_out"])


def worker_command(cfg_path: str | Path) -> list[str]:
    """The command line of one bench worker (tests run it under ``/usr/bin/time -v``)."""
    return [sys.executable, "-m", "edgegen.bench.worker", str(cfg_path)]


def _scores(opts: BenchOptions, images: np.ndarray, reference: np.ndarray | None) -> dict:
    """Quality vs the FP32 images on the same noise, and the metric model's confidence."""
    row = {}
    if reference is not None:
        row["quality"] = image_figures(list(reference), list(images))
    if opts.metric_model:
        from ..runtimes import load_engine

        cls = classify(load_engine(opts.metric_model, "onnxruntime"), images)
        row["classifier"] = {"mean_confidence": float(cls.confidence.mean()),
                             "classes": np.bincount(cls.classes, minlength=1).tolist()}
        if cls.features is not None:
            row["_features"] = cls.features
    return row


def bench(artifacts: Sequence[str | Path], opts: BenchOptions = BenchOptions(), *,
          progress: ProgressCallback | None = None) -> dict:
    """Measure every (artifact, backend, precision, shape mode); returns the report dict (see ``report.json``).

    Each configuration runs in its own fresh process (:func:`_measure`). Artifacts with a tiny
    decoder (``edgegen export --tiny-vae``) also get ``decoders``: both decoders' time and the
    tiny one's PSNR / SSIM against the full one on the same latents (``images_tiny`` its images). ``progress`` gets
    ``("bench", configurations done, configurations)`` and a message line per configuration.
    """
    report = progress or silent
    arts = [Artifact.load(path) for path in artifacts]
    plan = [(art, config) for art in arts for config in _configs(art, opts)]
    results, references = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for done, (art, (backend, precision, shapes, memory)) in enumerate(plan):
            report(f"bench: {art.path.name} {backend} {precision} shapes {shapes} {memory} memory", 0, None)
            report("bench", done, len(plan))
            figures, images = _measure(art, (backend, precision, shapes, memory), opts,
                                       Path(scratch) / f"{done}-{backend}-{precision}-{shapes}-{memory}")
            if precision == "fp32":
                references.setdefault(str(art.path), images)
            results.append({"artifact": str(art.path), "name": art.path.name, "family": art.family,
                            "backend": backend, "precision": precision, "shapes": shapes,
                            "size_mb": _size_mb(art, precision, backend), **figures, "images": images,
                            **_scores(opts, images, references.get(str(art.path)))})
        report("bench", len(plan), len(plan))
    _compare_rows(results)
    return {"machine": machine(), "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "results": results}


def _compare_rows(results: list[dict]) -> None:
    """Ratios to the first row, and each row's Fréchet distance to its artifact's FP32 features."""
    base = results[0]
    for row in results:
        row["ratio_vs_first"] = {"seconds_per_image": row["seconds_per_image"]["median"] / base["seconds_per_image"]["median"],
                                 "peak_rss": row["peak_rss_mb"] / base["peak_rss_mb"], "size": row["size_mb"] / base["size_mb"]}
        ref = next((r for r in results if r["artifact"] == row["artifact"] and r["precision"] == "fp32"
                    and "_features" in r), None)
        if "_features" in row and ref is not None and len(row["_features"]) > 2:
            row["classifier"]["frechet_distance_vs_fp32"] = frechet_distance(ref["_features"], row["_features"])
    for row in results:
        row.pop("_features", None)
