"""INT8 for a staged artifact: calibrate, quantize, gate quality (with per-layer fallback), gate speed.

Called by ``edgegen export --int8`` inside the atomic write: if a gate cannot pass, the error
propagates and nothing is written. The FP32 components stay in the artifact as the reference;
INT8 files are added as ``variants.int8.<backend>`` of each component.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..artifact import Artifact
from ..errors import EdgegenError
from . import gates
from .quantize import quantizable_layers, quantize_nncf, quantize_onnxruntime
from .record import gaussian_feeds, load_feeds_dir, read_prompts, record_diffusion, sample_diffusion
from .sensitivity import layer_errors, output_sensitivity


class QualityGateError(EdgegenError):
    """INT8 could not meet the quality thresholds, even with layers kept in floating point."""


# Per family: calibration size, gate size and thresholds. Decoders must be near-transparent;
# a diffusion U-Net is judged on whole deterministic trajectories from the same noise; Stable
# Diffusion's (text-conditioned, chaotic over many steps) image thresholds are looser and its
# per-step U-Net error carries the weight.
DEFAULTS = {
    "generator": dict(samples=512, gate_samples=64, min_psnr=30.0, min_ssim=0.95, max_step_error=None),
    "vae-decoder": dict(samples=64, gate_samples=8, min_psnr=35.0, min_ssim=0.97, max_step_error=None),
    # DDPM-MNIST U-Net, DDIM 50: 30 dB median PSNR against FP32 on the same noise keeps the LeNet
    # confidence of 256 samples within 0.003 of FP32 (0.7184 vs 0.7153); 28 dB gave 0.022.
    "unet": dict(samples=8, gate_samples=8, min_psnr=30.0, min_ssim=0.9, max_step_error=0.15),
    "stable-diffusion": dict(samples=4, gate_samples=2, min_psnr=15.0, min_ssim=0.5, max_step_error=0.15),
}


@dataclass(frozen=True)
class Int8Options:
    """Options of :func:`quantize_artifact` (``None`` means the family default in ``DEFAULTS``).

    Attributes:
        backend: "openvino" (NNCF -> IR) or "onnxruntime" (QDQ ONNX, also what TensorRT consumes).
        samples: calibration size: images sampled (diffusion) or inputs drawn (generator, decoder).
        prompts: file of calibration prompts (SD); default: edgegen's shipped list.
        calibration_data: directory of .npy / .npz feeds replacing the drawn inputs.
        sampler, steps, guidance_scale: the FP32 trajectory recorded for diffusion calibration.
        gate_samples: images compared by the quality gate (seeds disjoint from calibration).
        min_psnr, min_ssim, max_step_error: quality thresholds.
        exclude_batch: layers returned to floating point per failed round (default ~5%).
        max_rounds: failed rounds allowed before giving up.
        force: keep INT8 even where it is not faster than FP32.
    """

    backend: str = "openvino"
    seed: int = 0
    samples: int | None = None
    prompts: Path | None = None
    calibration_data: Path | None = None
    sampler: str = "ddim"
    steps: int = 20
    guidance_scale: float = 7.5
    height: int | None = None
    width: int | None = None
    gate_samples: int | None = None
    min_psnr: float | None = None
    min_ssim: float | None = None
    max_step_error: float | None = None
    exclude_batch: int | None = None
    max_rounds: int = 6
    force: bool = False

    def resolved(self, family: str) -> "Int8Options":
        values = asdict(self)
        for key, default in DEFAULTS[family].items():
            if values.get(key) is None:
                values[key] = default
        return Int8Options(**values)


@dataclass
class _Component:
    name: str
    fp32: Path
    feeds: list
    layers: list
    excluded: list = field(default_factory=list)


def calibration_feeds(art: Artifact, opts: Int8Options) -> dict[str, list]:
    """Calibration feeds per component for ``opts`` (already resolved for the family)."""
    family, m = art.family, art.manifest
    if family in ("generator", "vae-decoder"):
        name = "generator" if family == "generator" else "vae_decoder"
        input_name = art.component(name)["inputs"][0]["name"]
        if opts.calibration_data:
            return {name: load_feeds_dir(opts.calibration_data, input_name)}
        if family == "generator":
            shape = m["latent"]["shape"]
        else:
            f = m["latent"]["scale_factor"]
            shape = [m["latent"]["channels"], m["image"]["height"] // f, m["image"]["width"] // f]
        return {name: gaussian_feeds(input_name, shape, samples=opts.samples, batch=8 if family == "generator" else 1,
                                     seed=opts.seed)}
    if opts.calibration_data:
        return {c: load_feeds_dir(Path(opts.calibration_data) / c) for c in m["components"]
                if (Path(opts.calibration_data) / c).is_dir()}
    return record_diffusion(art, samples=opts.samples, sampler=opts.sampler, steps=opts.steps, seed=opts.seed,
                            guidance_scale=opts.guidance_scale, prompts=read_prompts(opts.prompts),
                            backend=opts.backend, height=opts.height, width=opts.width)


def _variant_file(comp: _Component, backend: str) -> str:
    return f"{comp.name}.int8.xml" if backend == "openvino" else f"{comp.name}.int8.qdq.onnx"


def _quantize(art: Artifact, comp: _Component, opts: Int8Options) -> None:
    out = art.path / _variant_file(comp, opts.backend)
    if opts.backend == "openvino":
        quantize_nncf(comp.fp32, out, comp.feeds, exclude=comp.excluded,
                      transformer=any(layer["op"] == "MatMul" for layer in comp.layers) and art.family == "stable-diffusion",
                      weighted_only=art.family == "unet")
    else:
        quantize_onnxruntime(comp.fp32, out, comp.feeds, exclude=comp.excluded)
    variants = art.component(comp.name).setdefault("variants", {}).setdefault("int8", {})
    variants[opts.backend] = {"file": out.name, "precision": "int8", "backend": opts.backend,
                              "quantizer": "nncf" if opts.backend == "openvino" else "onnxruntime.quantization (QDQ)",
                              "excluded_layers": list(comp.excluded)}


def _quality(art: Artifact, opts: Int8Options, reference: dict) -> dict:
    from ..pipelines.decoder import DecoderPipeline
    from ..pipelines.diffusion import DiffusionPipeline

    if art.family in ("generator", "vae-decoder"):
        int8 = DecoderPipeline(art, backend=opts.backend, precision="int8")
        images = [im for x in reference["inputs"] for im in int8(latents=x).images]
        return gates.image_figures(reference["images"], images)
    int8 = DiffusionPipeline(art, backend=opts.backend, precision="int8")
    images = [im for seed in reference["seeds"] for im in _sample(int8, opts, seed)]
    figures = gates.image_figures(reference["images"], images)
    figures["step_rel_error"] = gates.step_errors(reference["unet"], int8.engines["unet"], reference["unet_feeds"])
    return figures


def _sample(pipe, opts: Int8Options, seed: int) -> np.ndarray:
    return sample_diffusion(pipe, index=seed, seed=seed, steps=opts.steps, sampler=opts.sampler,
                            guidance_scale=opts.guidance_scale, prompts=read_prompts(opts.prompts),
                            height=opts.height, width=opts.width)


def _reference(art: Artifact, opts: Int8Options, calibration: dict) -> dict:
    """FP32 outputs the gate compares against, on inputs disjoint from calibration."""
    from ..pipelines.decoder import DecoderPipeline
    from ..pipelines.diffusion import DiffusionPipeline
    from .record import _Recorder

    gate_seed = opts.seed + 1_000_003
    if art.family in ("generator", "vae-decoder"):
        fp32 = DecoderPipeline(art, backend=opts.backend, precision="fp32")
        if art.family == "generator":
            inputs = [f[fp32.input_name] for f in gaussian_feeds(fp32.input_name, art.manifest["latent"]["shape"],
                                                                    samples=opts.gate_samples, seed=gate_seed)]
        else:
            # Decoders are gated on their calibration inputs (user data is usually scarce), or
            # on fresh draws when calibrating on N(0, I).
            source = next(iter(calibration.values()))
            inputs = [f[fp32.input_name] for f in source[: opts.gate_samples]]
        images = [im for x in inputs for im in fp32(latents=x).images]
        return {"inputs": inputs, "images": images}
    fp32 = DiffusionPipeline(art, backend=opts.backend, precision="fp32")
    recorder = _Recorder(fp32.unet.engine)
    fp32.unet.engine = recorder
    seeds = [gate_seed + i for i in range(opts.gate_samples)]
    images = []
    per_step: list[list] = [[] for _ in range(opts.steps)]
    for seed in seeds:
        recorder.feeds = []
        images += list(_sample(fp32, opts, seed))
        for step, item in enumerate(recorder.feeds):
            per_step[step].append(item)
    fp32.unet.engine = recorder.engine
    return {"seeds": seeds, "images": images, "unet_feeds": per_step, "unet": fp32.unet}


def _spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them when there are fewer): calibration
    feeds are in trajectory order, and a diffusion U-Net's errors depend on the timestep."""
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def _rank(art: Artifact, comps: list[_Component], opts: Int8Options, shortlist: int
          ) -> list[tuple[float, _Component, str]]:
    """Candidate layers across components, most helpful to keep in floating point first.

    Two stages, both on a QDQ model with the current exclusions (ONNX Runtime's, also for the
    OpenVINO backend): a cheap per-layer added-error screen picks ``shortlist`` layers per
    component, then each is scored by how much the final output error falls when that layer
    alone runs in float (:func:`~edgegen.calibration.sensitivity.output_sensitivity`).
    """
    ranked = []
    for comp in comps:
        if opts.backend == "onnxruntime":
            qdq, scratch = art.path / _variant_file(comp, "onnxruntime"), None
        else:
            qdq = scratch = art.path / f".{comp.name}.rank.qdq.onnx"
            quantize_onnxruntime(comp.fp32, qdq, comp.feeds, exclude=comp.excluded)
        try:
            feeds = _spread(comp.feeds, 4)
            screen = layer_errors(comp.fp32, qdq, layers=comp.layers, feeds=feeds)
            candidates = [name for name in screen if name not in comp.excluded][:shortlist]
            scores = output_sensitivity(comp.fp32, qdq, candidates=candidates, feeds=feeds)
        finally:
            if scratch is not None:
                scratch.unlink(missing_ok=True)
        ranked += [(score, comp, name) for name, score in scores.items()]
    return sorted(ranked, key=lambda r: -r[0])


def quantize_artifact(staging: Path, manifest: dict, options: Int8Options = Int8Options(), *,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Add INT8 variants to a staged artifact; returns the quantization report (also in the manifest).

    Raises:
        QualityGateError: the quality gate still fails after ``max_rounds`` rounds of fallback;
            the message gives the figures of every round.
    """
    say = progress or (lambda _m: None)
    art = Artifact(Path(staging), manifest)
    opts = options.resolved(art.family)
    say(f"int8: recording calibration data ({opts.samples} samples, seed {opts.seed})")
    calibration = calibration_feeds(art, opts)
    comps = [_Component(name, art.component_path(name), feeds, quantizable_layers(art.component_path(name)))
             for name, feeds in calibration.items() if feeds]
    say("int8: FP32 reference for the quality gate")
    reference = _reference(art, opts, calibration)
    thresholds = gates.QualityThresholds(opts.min_psnr, opts.min_ssim, opts.max_step_error)
    total_layers = sum(len(c.layers) for c in comps)
    batch = opts.exclude_batch or max(1, math.ceil(0.05 * total_layers))
    rounds, best, last_batch, rejected = [], None, [], set()
    for round_index in range(opts.max_rounds + 1):
        for comp in comps:
            say(f"int8: quantizing {comp.name} with {'NNCF' if opts.backend == 'openvino' else 'ONNX Runtime'}"
                f" ({len(comp.excluded)} layer(s) kept in floating point)")
            _quantize(art, comp, opts)
        figures = _quality(art, opts, reference)
        failed = gates.judge(figures, thresholds)
        score = figures["psnr_db"]["median"]
        rounds.append({"excluded": {c.name: len(c.excluded) for c in comps}, "figures": figures, "failed": failed})
        say(f"int8: quality gate round {round_index}: median PSNR {figures['psnr_db']['median']:.2f} dB, "
            f"SSIM {figures['ssim']['mean']:.4f}" + (f", mean step error {np.mean(figures['step_rel_error']):.4f}"
                                                     if figures.get("step_rel_error") else "")
            + (" — " + "; ".join(failed) if failed else " — passed"))
        if not failed:
            break
        if round_index == opts.max_rounds:
            raise QualityGateError(
                f"INT8 quality gate failed after {len(rounds)} round(s), "
                f"{sum(len(c.excluded) for c in comps)} of {total_layers} layers kept in floating point: "
                + " | ".join(f"round {i}: {'; '.join(r['failed'])}" for i, r in enumerate(rounds)))
        if best is not None and score < best - 0.5:
            # Keeping these layers in floating point made things worse (a quantizer can mis-handle
            # a mixed-precision boundary): put them back and try the next candidates instead.
            for comp, name in last_batch:
                comp.excluded.remove(name)
                rejected.add((comp.name, name))
        else:
            best = score
        ranked = [r for r in _rank(art, comps, opts, shortlist=4 * batch) if (r[1].name, r[2]) not in rejected]
        if not ranked:
            raise QualityGateError("INT8 quality gate failed with every quantizable layer tried in floating point: "
                                   + "; ".join(failed))
        last_batch = [(comp, name) for _, comp, name in ranked[:batch]]
        for comp, name in last_batch:
            comp.excluded.append(name)
    say("int8: speed gate (FP32 vs INT8 engine latency on the exported shapes)")
    from ..runtimes import load_engine

    speed = {}
    for comp in comps:
        feeds = comp.feeds[0]
        fp32 = gates.latency(load_engine(comp.fp32, opts.backend, precision="fp32"), feeds)
        int8_path = art.path / _variant_file(comp, opts.backend)
        int8 = gates.latency(load_engine(int8_path, opts.backend, precision="int8"), feeds)
        speedup = fp32["median_s"] / int8["median_s"]
        keep = speedup > 1.0 or opts.force
        speed[comp.name] = {"fp32": fp32, "int8": int8, "speedup": speedup, "shapes": {k: list(v.shape) for k, v in feeds.items()},
                            "kept": "int8" if keep else "fp32"}
        say(f"int8: {comp.name}: FP32 {1000 * fp32['median_s']:.1f} ms, INT8 {1000 * int8['median_s']:.1f} ms, "
            f"speed-up {speedup:.2f}x" + ("" if keep else " — INT8 is not faster: keeping FP32 (use --force-int8)"))
        variant = art.component(comp.name)["variants"]["int8"][opts.backend]
        variant.update(calibration={"seed": opts.seed, "items": len(comp.feeds), "samples": opts.samples,
                                    "sampler": opts.sampler if art.family in ("unet", "stable-diffusion") else None,
                                    "steps": opts.steps if art.family in ("unet", "stable-diffusion") else None,
                                    "data": str(opts.calibration_data) if opts.calibration_data else None},
                       speed=speed[comp.name])
        if not keep:
            for suffix in (".xml", ".bin", ".onnx", ".onnx.data"):
                (art.path / (Path(variant["file"]).stem + suffix)).unlink(missing_ok=True)
            del art.component(comp.name)["variants"]["int8"][opts.backend]
    report = {"backend": opts.backend, "thresholds": asdict(thresholds), "rounds": rounds, "speed": speed,
              "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()}}
    manifest.setdefault("quantization", {})["int8"] = report
    return report
