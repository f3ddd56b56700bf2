"""`edgegen demo`: the whole flow on models edgegen trained itself, with nothing downloaded.

The bundled models (``edgegen/zoo``, trained by ``benchmarks/zoo/train.py`` on scikit-learn's
handwritten digits) are exported to ONNX behind the parity gate, quantized to INT8 behind the
quality and speed gates, run by the numpy runtime, and measured with ``edgegen bench``:

* a class-conditional diffusion U-Net, sampled with DDIM and classifier-free guidance;
* a DCGAN generator; * a convolutional VAE's decoder.

Outputs: one image grid per model and precision, ``summary.md`` / ``summary.json`` (classifier
agreement with the requested digit, confidence, latency), and the bench reports.
Needs the ``export`` and ``openvino`` extras.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import write_json_atomic, write_text_atomic
from .errors import EdgegenError
from .images import grid, save_png, to_uint8
from .metrics import agreement, classify
from .progress import ProgressCallback, silent, substage

ZOO = Path(__file__).parent / "zoo"
# The conditional U-Net's CFG scale; guidance applies in the card's sigma interval (edgegen.guidance).
GUIDANCE_SCALE = 3.0


def class_agreement(pipe, classifier, *, guidance_scale: float, per_class: int = 20, steps: int = 50, seed: int = 0,
                    guidance_interval="default", progress: ProgressCallback | None = None) -> dict:
    """Sample ``per_class`` images of each digit 0-9 with DDIM and score them with the bundled classifier.

    Returns {"agreement": share of samples classified as the requested digit (0..1), "per_class": {digit: share},
    "mean_confidence", "guidance_scale", "steps", "images": (10 * per_class, 32, 32, 1) in [0, 1],
    "seconds"}. ``guidance_interval`` as in :meth:`DiffusionPipeline.__call__` ("default": the artifact's).
    ``progress`` gets ``("sampling ..., guidance W", step, steps)`` after each step.
    """
    labels = np.repeat(np.arange(10), per_class)
    report, stage, done = progress or silent, f"sampling {len(labels)} digits, guidance {guidance_scale:g}", [0]

    def step(_step, _sigma, _x0):
        done[0] += 1
        report(stage, done[0], steps)

    result = pipe(class_label=labels, num_images=len(labels), num_inference_steps=steps, sampler="ddim",
                  guidance_scale=guidance_scale, seed=seed, guidance_interval=guidance_interval, callback=step)
    scores = classify(classifier, result.images)
    return {**agreement(scores.classes, labels), "mean_confidence": float(scores.confidence.mean()),
            "guidance_scale": guidance_scale, "steps": steps, "images": result.images,
            "seconds": result.timings["total_s"]}


def export_zoo(out: Path, *, int8: bool = True, progress: ProgressCallback | None = None) -> dict[str, Path]:
    """Export the bundled models (FP32 + gated INT8) into ``out``; returns artifact paths by name.

    ``progress`` gets a message (``total=None``) per model and per export step.
    """
    from .calibration.int8 import Int8Options
    from .export import ModuleExportOptions, export_module
    from .export.zoo import export_classifier

    missing = [n for n in ("cond_unet", "dcgan", "vae", "classifier") if not (ZOO / f"{n}.safetensors").is_file()]
    if missing:
        raise EdgegenError(f"bundled weights missing from {ZOO}: {missing} (train them: python benchmarks/zoo/train.py)")
    module = str(Path(__file__).parent / "export" / "zoo.py")
    card = json.loads((ZOO / "cond_unet.json").read_text())
    config = out / "scheduler_config.json"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(config, card["scheduler_config"])
    arts = {}
    specs = {
        "digits-diffusion": ("load_cond_unet", "cond_unet", "unet",
                             ModuleExportOptions(sample_shape=(1, 32, 32), timestep_dtype="int64", scheduler_config=config,
                                                 num_classes=10, null_class=10,
                                                 guidance_interval=(tuple(card["guidance_interval"])
                                                                    if card.get("guidance_interval") else None)),
                             Int8Options(samples=2, steps=20, gate_samples=1, guidance_scale=GUIDANCE_SCALE)),
        "digits-dcgan": ("load_dcgan", "dcgan", "generator",
                         ModuleExportOptions(latent_shape=(64,), image_shape=(1, 32, 32), output_range=(-1, 1)),
                         Int8Options(samples=256)),
        "digits-vae": ("load_vae_decoder", "vae", "generator",
                       ModuleExportOptions(latent_shape=(16,), image_shape=(1, 32, 32), output_range=(0, 1)),
                       Int8Options(samples=256)),
    }
    report = progress or silent
    for name, (fn, weights, kind, options, int8_options) in specs.items():
        report(f"exporting {name} (FP32 parity gate{', INT8 quality and speed gates' if int8 else ''})", 0, None)
        arts[name] = export_module(f"{module}:{fn}", out / name, kind=kind, weights=ZOO / f"{weights}.safetensors",
                                   options=options, int8=int8_options if int8 else None,
                                   progress=substage(report, f"  {name}: "))
    arts["classifier"] = export_classifier(ZOO / "classifier.safetensors", out / "digit-classifier.onnx")
    return arts


MODELS = ("digits-diffusion", "digits-dcgan", "digits-vae")


def run_demo(out: str | Path, *, seed: int = 0, guidance_scale: float = GUIDANCE_SCALE, steps: int = 50, bench: bool = True,
             progress: ProgressCallback | None = None) -> dict:
    """Export, generate, classify and measure; writes grids, summary.md / .json under ``out``.

    ``progress`` gets a message (``total=None``) per stage and result, a bar per sampling run
    (steps) and one for the bench (configurations). Returns the summary (as summary.json).
    """
    from .pipelines import Pipeline
    from .runtimes import load_engine

    out, report = Path(out), progress or silent
    arts = export_zoo(out / "artifacts", progress=report)
    classifier = load_engine(arts["classifier"], "onnxruntime")
    summary: dict = {"seed": seed, "models": {}}
    for name in MODELS:
        for precision in ("fp32", "int8"):
            pipe = Pipeline.load(arts[name], precision=precision)
            figures, images = _sample(pipe, classifier, name, precision, seed=seed, steps=steps,
                                      guidance_scale=guidance_scale, progress=substage(report, f"{name} {precision}: "))
            path = save_png(out / f"{name}-{precision}.png", np.repeat(grid(to_uint8(images), 8), 3, axis=-1),
                            {"model": name, "precision": pipe.precision})
            summary["models"].setdefault(name, {})[precision] = {**figures, "grid": path.name}
            report(f"{name} {precision}: {_describe(figures)} -> {path}", 0, None)
    if bench:
        summary.update(_bench(arts, out / "bench", steps=steps, progress=report))
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", _summary_md(summary))
    return summary


def _sample(pipe, classifier, name: str, precision: str, *, seed: int, steps: int, guidance_scale: float,
            progress: ProgressCallback) -> tuple[dict, np.ndarray]:
    """One model at one precision: its figures and its (B, 32, 32, 1) images in [0, 1]."""
    if name == "digits-diffusion":
        figures = class_agreement(pipe, classifier, guidance_scale=guidance_scale, per_class=8, steps=steps, seed=seed,
                                  progress=progress)
        images = figures.pop("images")
        if precision == "fp32":  # the same noise without guidance: what CFG adds
            unguided = class_agreement(pipe, classifier, guidance_scale=1.0, per_class=8, steps=steps, seed=seed,
                                       progress=progress)
            figures["without_guidance"] = {k: unguided[k] for k in ("agreement", "per_class", "mean_confidence")}
    else:
        result = pipe(num_images=64, seed=seed)
        images = result.images
        scores = classify(classifier, images)
        figures = {"mean_confidence": float(scores.confidence.mean()),
                   "classes": np.bincount(scores.classes, minlength=10).tolist(), "seconds": result.timings["total_s"]}
    return {**figures, "precision": pipe.precision}, images


def _describe(figures: dict) -> str:
    text = f"{100 * figures['agreement']:.1f}% of samples classified as the requested digit, " if "agreement" in figures else ""
    if "without_guidance" in figures:
        text += f"{100 * figures['without_guidance']['agreement']:.1f}% without guidance, "
    return text + f"mean confidence {figures['mean_confidence']:.3f}, {figures['seconds']:.2f} s"


def _bench(arts: dict[str, Path], out: Path, *, steps: int, progress: ProgressCallback) -> dict:
    """``edgegen bench`` of the three models (each configuration in a fresh process)."""
    from .bench.report import write_reports
    from .bench.run import BenchOptions, bench as run_bench

    progress("measuring latency and memory with edgegen bench (one fresh process per configuration)", 0, None)
    report = run_bench([arts[n] for n in MODELS], BenchOptions(steps=steps, runs=2, warmup=1, num_images=8,
                                                               metric_model=arts["classifier"]), progress=progress)
    paths = write_reports(report, out)
    return {"bench": {r["name"] + "/" + r["precision"]: {"seconds_per_image": r["seconds_per_image"]["median"],
                                                         "peak_rss_mb": r["peak_rss_mb"]} for r in report["results"]},
            "bench_report": str(paths["html"])}


def _summary_md(summary: dict) -> str:
    lines = ["# edgegen demo", "", "| model | precision | quality | seconds |", "|---|---|---|---|"]
    for name, rows in summary["models"].items():
        for f in rows.values():
            quality = (f"{100 * f['agreement']:.1f}% classified as requested (conf. {f['mean_confidence']:.3f})"
                       if "agreement" in f else f"classifier confidence {f['mean_confidence']:.3f}")
            lines.append(f"| {name} | {f['precision']} | {quality} | {f['seconds']:.2f} |")
            if "without_guidance" in f:
                u = f["without_guidance"]
                lines.append(f"| {name}, guidance 1 (no CFG) | {f['precision']} | {100 * u['agreement']:.1f}% classified "
                             f"as requested (conf. {u['mean_confidence']:.3f}) | |")
    return "\n".join(lines) + "\n"
