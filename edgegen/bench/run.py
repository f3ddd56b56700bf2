"""`edgegen bench`: measure artifacts per backend and precision, compare quality with FP32, write reports."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..artifact import Artifact
from ..errors import EdgegenError


@dataclass(frozen=True)
class BenchOptions:
    """What to measure.

    Attributes:
        backends: engine backends; each artifact is run on each.
        precisions: None = fp32 plus every stored variant (int8) the backend can run.
        steps: diffusion steps; runs / warmup: measured and discarded generations.
        num_images: images per generation (the quality comparison uses them all).
        metric_model: optional classifier ONNX: input images (N, C, H, W) in [0, 1]; output 0
            logits or log-probabilities, output 1 (optional) features for the Fréchet distance.
    """

    backends: tuple[str, ...] = ("openvino",)
    precisions: tuple[str, ...] | None = None
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
    """Megabytes of the files the configuration loads."""
    total = 0
    for name in art.manifest["components"]:
        try:
            path = art.component_path(name, None if precision in ("fp32", "bf16") else precision, backend)
        except EdgegenError:
            path = art.component_path(name)
        for p in path.parent.glob(path.stem + ".*"):
            total += p.stat().st_size
    return total / 2**20


def _configs(art: Artifact, opts: BenchOptions) -> list[tuple[str, str]]:
    configs = []
    for backend in opts.backends:
        precisions = opts.precisions or ("fp32", *[p for p in ("int8",) if any(
            art.has_variant(n, p, backend) for n in art.manifest["components"])])
        configs += [(backend, p) for p in precisions]
    return configs


def _classify(model: Path, images: np.ndarray) -> dict:
    from ..runtimes import load_engine

    engine = load_engine(model, "onnxruntime")
    spec = engine.inputs[0]
    c, h, w = spec.shape[1:]
    from PIL import Image

    batch = []
    for im in images:
        pil = Image.fromarray((im[..., 0] if im.shape[-1] == 1 else im).astype(np.float32), mode="F") \
            if im.shape[-1] == 1 else Image.fromarray((im * 255).round().astype(np.uint8))
        pil = pil.resize((w, h), Image.BILINEAR)
        arr = np.asarray(pil, dtype=np.float32)
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1) / 255
        batch.append(arr[:c])
    out = engine({spec.name: np.stack(batch).astype(np.float32)})
    values = list(out.values())
    logits = values[0].astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return {"confidence": probs.max(1), "classes": probs.argmax(1), "features": values[1] if len(values) > 1 else None}


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (as FID, Heusel et al. 2017)."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        # Few samples give singular covariances; sqrtm still returns the usable estimate.
        warnings.simplefilter("ignore")
        covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def bench(artifacts: Sequence[str | Path], opts: BenchOptions = BenchOptions(), *,
          progress: Callable[[str], None] | None = None) -> dict:
    """Measure every (artifact, backend, precision); returns the report dict (see ``report.json``)."""
    from ..calibration.gates import image_figures

    say = progress or (lambda _m: None)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for index, path in enumerate(artifacts):
            art = Artifact.load(path)
            reference = None
            for backend, precision in _configs(art, opts):
                say(f"{art.path.name}: {backend} {precision}")
                cfg = {"artifact": str(art.path), "backend": backend, "precision": precision, "steps": opts.steps,
                       "runs": opts.runs, "warmup": opts.warmup, "seed": opts.seed, "num_images": opts.num_images,
                       "prompt": opts.prompt, "guidance_scale": opts.guidance_scale, "sampler": opts.sampler,
                       "height": opts.height, "width": opts.width,
                       "images_out": str(Path(scratch) / f"{index}-{backend}-{precision}.npy"),
                       "result_out": str(Path(scratch) / f"{index}-{backend}-{precision}.json")}
                cfg_path = Path(scratch) / "cfg.json"
                cfg_path.write_text(json.dumps(cfg))
                proc = subprocess.run([sys.executable, "-m", "edgegen.bench.worker", str(cfg_path)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise EdgegenError(f"bench of '{art.path}' on {backend} {precision} failed: "
                                       f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
                figures = json.loads(Path(cfg["result_out"]).read_text())
                images = np.load(cfg["images_out"])
                row = {"artifact": str(art.path), "name": art.path.name, "family": art.family, "backend": backend,
                       "precision": precision, "size_mb": _size_mb(art, precision, backend), **figures,
                       "images": images}
                if precision == "fp32" and reference is None:
                    reference = images
                if reference is not None:
                    row["quality"] = image_figures(list(reference), list(images))
                if opts.metric_model:
                    cls = _classify(opts.metric_model, images)
                    row["classifier"] = {"mean_confidence": float(cls["confidence"].mean()),
                                         "classes": np.bincount(cls["classes"], minlength=1).tolist()}
                    if cls["features"] is not None:
                        row["_features"] = cls["features"]
                results.append(row)
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
    return {"machine": machine(), "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
            "results": results}
