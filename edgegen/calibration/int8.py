"""INT8 for an artifact: calibrate, quantize, gate quality (with per-layer fallback), gate speed.

Two entry points, one procedure:

* :func:`quantize` (``edgegen quantize ART --out ART2``): path in, path out, like ONNX Runtime's
  ``quantize_static(model_input, model_output, ...)``. Reads an artifact, writes a new one with
  INT8 variants through :func:`~edgegen.artifact.atomic_artifact`; ``model_output`` equal to
  ``model_input`` replaces it atomically. Needs no torch: calibration is recorded, gates and
  the layer fallback run on engines and numpy only.
* :func:`quantize_artifact`: the same on an artifact being staged (``edgegen export --int8``
  calls it inside its atomic write, so a failing gate leaves the previous artifact in place).

The FP32 components stay in the artifact as the reference; INT8 files are added as
``variants.int8.<backend>`` of each component.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifact import MANIFEST, Artifact, atomic_artifact
from ..compile.openvino import add_openvino_ir
from ..errors import EdgegenError, NonFiniteError
from ..metrics import image_figures
from ..progress import ProgressCallback, silent, substage
from ..types import Backend, parse_enum
from . import gates
from .quantize import quantizable_layers, quantize_nncf, quantize_onnxruntime
from .record import FeedRecorder, gaussian_feeds, load_feeds_dir, read_prompts, record_diffusion, sample_diffusion
from .sensitivity import layer_errors, output_sensitivity


class QualityGateError(EdgegenError):
    """INT8 could not meet the quality thresholds, even with layers kept in floating point."""


# Per family: calibration size, gate size and thresholds. Decoders must be near-transparent;
# a diffusion U-Net is judged on whole deterministic trajectories from the same noise; Stable
# Diffusion's (text-conditioned, chaotic over many steps) image thresholds are looser and its
# per-step U-Net error carries the weight.
TRAJECTORY = dict(sampler="ddim", steps=20, guidance_scale=7.5)
LCM_TRAJECTORY = dict(sampler="lcm", steps=4, guidance_scale=8.5)  # LatentConsistencyModelPipeline's defaults
DEFAULTS = {
    "generator": dict(samples=512, gate_samples=64, min_psnr=30.0, min_ssim=0.95, max_step_error=None),
    "vae-decoder": dict(samples=64, gate_samples=8, min_psnr=35.0, min_ssim=0.97, max_step_error=None),
    # DDPM-MNIST U-Net, DDIM 50: 30 dB median PSNR against FP32 on the same noise keeps the LeNet
    # confidence of 256 samples within 0.003 of FP32 (0.7184 vs 0.7153); 28 dB gave 0.022.
    "unet": dict(samples=8, gate_samples=8, min_psnr=30.0, min_ssim=0.9, max_step_error=0.15),
    "stable-diffusion": dict(samples=4, gate_samples=2, min_psnr=15.0, min_ssim=0.5, max_step_error=0.15),
}
QUANTIZERS = (Backend.openvino, Backend.onnxruntime)


@dataclass(frozen=True)
class Int8Options:
    """Options of :func:`quantize` (``None`` means the family default in ``DEFAULTS``).

    Attributes:
        backend: :attr:`Backend.openvino` (NNCF -> IR) or :attr:`Backend.onnxruntime` (QDQ ONNX,
            also what TensorRT builds INT8 engines from); a string is accepted and parsed.
        samples: calibration size: images sampled (diffusion) or inputs drawn (generator, decoder).
        prompts: file of calibration prompts (SD); default: edgegen's shipped list.
        calibration_data: directory of .npy / .npz feeds replacing the drawn inputs.
        sampler, steps, guidance_scale: the FP32 trajectory recorded for diffusion calibration
            (default DDIM 20 at 7.5; LCM 4 at 8.5 for LCM-distilled U-Nets).
        gate_samples: images compared by the quality gate (seeds disjoint from calibration).
        min_psnr, min_ssim, max_step_error: quality thresholds.
        exclude_batch: layers returned to floating point per failed round (default ~5%).
        max_rounds: failed rounds allowed before giving up (10: with ~5% of the layers per round,
            up to half of them can return to floating point; a batch that made the output worse
            is put back and costs a round).
        force: keep INT8 even where it is not faster than FP32.
    Raises:
        ValueError: a backend that does not quantize (names the value and the allowed ones).
    """

    backend: Backend = Backend.openvino
    seed: int = 0
    samples: int | None = None
    prompts: Path | None = None
    calibration_data: Path | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    gate_samples: int | None = None
    min_psnr: float | None = None
    min_ssim: float | None = None
    max_step_error: float | None = None
    exclude_batch: int | None = None
    max_rounds: int = 10
    force: bool = False

    def __post_init__(self) -> None:
        backend = parse_enum(Backend, self.backend, "INT8 backend")
        if backend not in QUANTIZERS:
            raise ValueError(f"INT8 backend: expected openvino or onnxruntime (TensorRT builds its INT8 engines "
                             f"from the onnxruntime QDQ variant), got {backend.value!r}")
        object.__setattr__(self, "backend", backend)

    def resolved(self, family: str, *, lcm: bool = False) -> "Int8Options":
        """These options with every ``None`` replaced by the family's default; the recorded
        trajectory defaults to DDIM 20 at guidance 7.5, or, for an LCM-distilled U-Net (``lcm``:
        the artifact has a ``guidance_embedding``), to what it runs: LCM 4 steps at 8.5."""
        values = asdict(self)
        trajectory = LCM_TRAJECTORY if lcm else TRAJECTORY
        defaults = {**trajectory, **DEFAULTS[family]}
        return replace(self, **{k: v for k, v in defaults.items() if values.get(k) is None})

    def as_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v.value if isinstance(v, Backend) else v)
                for k, v in asdict(self).items()}


@dataclass
class _Component:
    name: str
    fp32: Path
    feeds: Sequence[dict[str, np.ndarray]]
    layers: list
    excluded: list = field(default_factory=list)


def calibration_feeds(art: Artifact, opts: Int8Options, progress: ProgressCallback | None = None,
                      directory: Path | None = None) -> dict[str, Sequence[dict[str, np.ndarray]]]:
    """Calibration feeds per component for ``opts`` (already resolved for the family).

    With ``directory``, diffusion feeds recorded from the FP32 trajectory are written there as
    they come (:class:`~edgegen.calibration.record.FeedStore`, memory-mapped on read) instead of
    being held in memory; the caller removes the directory.
    """
    family, spec = art.family, art.spec
    if family in ("generator", "vae-decoder"):
        name = "generator" if family == "generator" else "vae_decoder"
        input_name = spec.component(name).inputs[0].name
        if opts.calibration_data:
            return {name: load_feeds_dir(opts.calibration_data, input_name)}
        if family == "generator":
            shape = spec.latent.shape
        else:
            f = spec.scale_factor
            shape = (spec.latent.channels, spec.image.height // f, spec.image.width // f)
        return {name: gaussian_feeds(input_name, shape, samples=opts.samples, batch=8 if family == "generator" else 1,
                                     seed=opts.seed)}
    if opts.calibration_data:
        return {c: load_feeds_dir(Path(opts.calibration_data) / c) for c in spec.components
                if (Path(opts.calibration_data) / c).is_dir()}
    return record_diffusion(art, samples=opts.samples, sampler=opts.sampler, steps=opts.steps, seed=opts.seed,
                            guidance_scale=opts.guidance_scale, prompts=read_prompts(opts.prompts),
                            backend=opts.backend.value, height=opts.height, width=opts.width,
                            directory=directory, progress=progress)


_VARIANT_SUFFIXES = (".xml", ".bin", ".onnx", ".onnx.data")


def _variant_file(name: str, backend: Backend) -> str:
    return f"{name}.int8.xml" if backend is Backend.openvino else f"{name}.int8.qdq.onnx"


def _variant_files(file: str) -> list[str]:
    """Every file a variant's model file brings along (IR weights, ONNX external data)."""
    return [Path(file).stem + suffix for suffix in _VARIANT_SUFFIXES]


def _quantize(art: Artifact, comp: _Component, opts: Int8Options, report: ProgressCallback) -> None:
    out = art.path / _variant_file(comp.name, opts.backend)
    for name in _variant_files(out.name):
        # Staged files may be hard links to the input artifact's: never write through them.
        (art.path / name).unlink(missing_ok=True)
    if opts.backend is Backend.openvino:
        quantize_nncf(comp.fp32, out, comp.feeds, exclude=comp.excluded,
                      transformer=any(layer["op"] == "MatMul" for layer in comp.layers) and art.family == "stable-diffusion",
                      weighted_only=art.family == "unet", progress=substage(report, f"{comp.name}: "))
    else:
        quantize_onnxruntime(comp.fp32, out, comp.feeds, exclude=comp.excluded)
    gc.collect()  # the quantizer's model copies, before the next component's
    variants = art.draft["components"][comp.name].setdefault("variants", {}).setdefault("int8", {})
    variants[opts.backend.value] = {
        "file": out.name, "precision": "int8", "backend": opts.backend.value,
        "quantizer": "nncf" if opts.backend is Backend.openvino else "onnxruntime.quantization (QDQ)",
        "excluded_layers": list(comp.excluded)}


def _quality(art: Artifact, opts: Int8Options, reference: dict, report: ProgressCallback) -> dict:
    """The INT8 pipeline's figures against the FP32 reference on the same inputs and noise.

    An INT8 candidate whose engines give NaN / Inf (an overflowing quantized layer) fails the
    round like any other, with ``nonfinite`` saying where, so that the fallback moves layers to
    floating point instead of the export stopping on the first NonFiniteError.
    """
    try:
        return _int8_figures(art, opts, reference, report)
    except NonFiniteError as exc:
        return {"psnr_db": {"median": 0.0, "mean": 0.0, "min": 0.0}, "ssim": {"mean": 0.0, "min": 0.0},
                "images": 0, "nonfinite": str(exc)}
    finally:
        gc.collect()  # the INT8 pipeline's engines, before the next round quantizes


def _int8_figures(art: Artifact, opts: Int8Options, reference: dict, report: ProgressCallback) -> dict:
    from ..pipelines.decoder import DecoderPipeline
    from ..pipelines.diffusion import DiffusionPipeline

    if art.family in ("generator", "vae-decoder"):
        int8 = DecoderPipeline(art, backend=opts.backend.value, precision="int8")
        images = [im for x in reference["inputs"] for im in int8(latents=x).images]
        return image_figures(reference["images"], images)
    int8 = DiffusionPipeline(art, backend=opts.backend.value, precision="int8")
    stage, seeds = "int8: quality gate: INT8 pipeline on the gate samples (steps)", reference["seeds"]
    images = [im for i, seed in enumerate(seeds)
              for im in _sample(int8, opts, seed, _step_counter(report, stage, i * opts.steps, len(seeds) * opts.steps))]
    figures = image_figures(reference["images"], images)
    figures["step_rel_error"] = gates.step_errors(reference["unet_outputs"], int8.engines["unet"],
                                                  reference["unet_feeds"],
                                                  progress=lambda done, total: report(
                                                      "int8: quality gate: per-step U-Net error (steps)", done, total))
    return figures


def _step_counter(report: ProgressCallback, stage: str, start: int, total: int):
    """A pipeline step callback reporting ``(stage, start + steps so far, total)``."""
    done = [start]

    def step(*_):
        done[0] += 1
        report(stage, done[0], total)
    return step


def _sample(pipe, opts: Int8Options, seed: int, callback=None) -> np.ndarray:
    return sample_diffusion(pipe, index=seed, seed=seed, steps=opts.steps, sampler=opts.sampler,
                            guidance_scale=opts.guidance_scale, prompts=read_prompts(opts.prompts),
                            height=opts.height, width=opts.width, callback=callback)


def _decoder_reference(art: Artifact, opts: Int8Options, calibration: dict, gate_seed: int) -> dict:
    from ..pipelines.decoder import DecoderPipeline

    fp32 = DecoderPipeline(art, backend=opts.backend.value, precision="fp32")
    if art.family == "generator":
        inputs = [f[fp32.input_name] for f in gaussian_feeds(fp32.input_name, art.spec.latent.shape,
                                                                samples=opts.gate_samples, seed=gate_seed)]
    else:
        # Decoders are gated on their calibration inputs (user data is usually scarce), or
        # on fresh draws when calibrating on N(0, I).
        source = next(iter(calibration.values()))
        inputs = [f[fp32.input_name] for f in source[: opts.gate_samples]]
    images = [im for x in inputs for im in fp32(latents=x).images]
    return {"inputs": inputs, "images": images}


def _reference(art: Artifact, opts: Int8Options, calibration: dict, report: ProgressCallback,
               directory: Path) -> dict:
    """FP32 outputs the gate compares against, on inputs disjoint from calibration; for diffusion
    also the U-Net feeds and FP32 outputs of every step of the FP32 trajectories, recorded through
    an engine hook into ``directory`` (memory-mapped on read). The FP32 pipeline is released
    before returning: the gate rounds never hold FP32 and INT8 engines at once."""
    from ..pipelines.diffusion import DiffusionPipeline

    gate_seed = opts.seed + 1_000_003
    if art.family in ("generator", "vae-decoder"):
        return _decoder_reference(art, opts, calibration, gate_seed)
    recorder = FeedRecorder(directory, outputs=True)
    fp32 = DiffusionPipeline(art, backend=opts.backend.value, precision="fp32",
                             engine_hook=lambda name, engine: recorder(name, engine) if name == "unet" else engine)
    seeds = [gate_seed + i for i in range(opts.gate_samples)]
    images, per_step, counts = [], [[] for _ in range(opts.steps)], []
    stage, total = "int8: FP32 reference for the quality gate (steps)", len(seeds) * opts.steps
    report(stage, 0, total)
    for i, seed in enumerate(seeds):
        before = len(recorder.feeds["unet"])
        images += list(_sample(fp32, opts, seed, _step_counter(report, stage, i * opts.steps, total)))
        counts.append((before, len(recorder.feeds["unet"])))
    del fp32  # the recorder holds the recorded files, not the engines
    feeds, outputs = recorder.feeds["unet"], recorder.outputs["unet"]
    for before, after in counts:
        for step, index in enumerate(range(before, after)):
            per_step[step].append(index)
    gc.collect()
    return {"seeds": seeds, "images": images,
            "unet_feeds": [[feeds[i] for i in indices] for indices in per_step],
            "unet_outputs": [[next(iter(outputs[i].values())) for i in indices] for indices in per_step]}


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
        if opts.backend is Backend.onnxruntime:
            qdq, scratch = art.path / _variant_file(comp.name, Backend.onnxruntime), None
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


def _round_line(index: int, figures: dict, failed: list[str]) -> str:
    steps = figures.get("step_rel_error")
    return (f"int8: quality gate round {index}: median PSNR {figures['psnr_db']['median']:.2f} dB, "
            f"SSIM {figures['ssim']['mean']:.4f}" + (f", mean step error {np.mean(steps):.4f}" if steps else "")
            + (" — " + "; ".join(failed) if failed else " — passed"))


class _Fallback:
    """Which layers stay in floating point: after each failed gate round, the next ``batch``
    layers by :func:`_rank`; a batch that made the median PSNR worse by > 0.5 dB (a quantizer can
    mis-handle a mixed-precision boundary) is put back and its layers are not tried again."""

    def __init__(self, art: Artifact, comps: list[_Component], opts: Int8Options):
        self.art, self.comps, self.opts = art, comps, opts
        self.total = sum(len(c.layers) for c in comps)
        self.batch = opts.exclude_batch or max(1, math.ceil(0.05 * self.total))
        self.best: float | None = None
        self.last: list[tuple[_Component, str]] = []
        self.rejected: set[tuple[str, str]] = set()

    def step(self, score: float, failed: list[str]) -> None:
        """Move the next layers to floating point. Raises QualityGateError when none are left."""
        if self.best is not None and score < self.best - 0.5:
            for comp, name in self.last:
                comp.excluded.remove(name)
                self.rejected.add((comp.name, name))
        else:
            self.best = score
        ranked = [r for r in _rank(self.art, self.comps, self.opts, shortlist=4 * self.batch)
                  if (r[1].name, r[2]) not in self.rejected]
        if not ranked:
            raise QualityGateError("INT8 quality gate failed with every quantizable layer tried in floating point: "
                                   + "; ".join(failed))
        self.last = [(comp, name) for _, comp, name in ranked[: self.batch]]
        for comp, name in self.last:
            comp.excluded.append(name)


def _gate_rounds(art: Artifact, comps: list[_Component], opts: Int8Options, reference: dict,
                 report: ProgressCallback) -> tuple[gates.QualityThresholds, list[dict]]:
    """Quantize every component and gate the pipeline, moving layers to floating point until it passes.

    Raises:
        QualityGateError: still failing after ``max_rounds`` rounds of fallback; the message gives
            the figures of every round.
    """
    thresholds = gates.QualityThresholds(opts.min_psnr, opts.min_ssim, opts.max_step_error)
    fallback, rounds = _Fallback(art, comps, opts), []
    tool = "NNCF" if opts.backend is Backend.openvino else "ONNX Runtime"
    for index in range(opts.max_rounds + 1):
        stage = f"int8: round {index}: quantizing with {tool} ({sum(len(c.excluded) for c in comps)} layer(s) in float)"
        for done, comp in enumerate(comps):
            report(stage, done, len(comps))
            _quantize(art, comp, opts, report)
        report(stage, len(comps), len(comps))
        figures = _quality(art, opts, reference, report)
        failed = gates.judge(figures, thresholds)
        rounds.append({"excluded": {c.name: len(c.excluded) for c in comps}, "figures": figures, "failed": failed})
        report(_round_line(index, figures, failed), 0, None)
        rounds_stage = f"int8: quality gate (up to {opts.max_rounds + 1} rounds)"
        report(rounds_stage, opts.max_rounds + 1 if not failed else index + 1, opts.max_rounds + 1)
        if not failed:
            return thresholds, rounds
        if index == opts.max_rounds:
            raise QualityGateError(
                f"INT8 quality gate failed after {len(rounds)} round(s), "
                f"{sum(len(c.excluded) for c in comps)} of {fallback.total} layers kept in floating point: "
                + " | ".join(f"round {i}: {'; '.join(r['failed'])}" for i, r in enumerate(rounds)))
        fallback.step(figures["psnr_db"]["median"], failed)
    raise AssertionError("unreachable")  # the loop returns or raises


def _speed_gate(art: Artifact, comps: list[_Component], opts: Int8Options, report: ProgressCallback) -> dict:
    """Time FP32 and INT8 engines per component on the exported shapes; drop INT8 variants that
    are not faster (unless ``force``). Returns the figures per component."""
    from ..runtimes import load_engine

    speed, stage = {}, "int8: speed gate (FP32 vs INT8 latency)"
    for done, comp in enumerate(comps):
        report(stage, done, len(comps))
        feeds = {k: np.array(v) for k, v in comp.feeds[0].items()}
        # One engine at a time: each is released (and collected) before the next is loaded.
        fp32 = gates.latency(load_engine(comp.fp32, opts.backend.value, precision="fp32"), feeds)
        gc.collect()
        int8_path = art.path / _variant_file(comp.name, opts.backend)
        int8 = gates.latency(load_engine(int8_path, opts.backend.value, precision="int8"), feeds)
        gc.collect()
        speedup = fp32["median_s"] / int8["median_s"]
        keep = speedup > 1.0 or opts.force
        speed[comp.name] = {"fp32": fp32, "int8": int8, "speedup": speedup,
                            "shapes": {k: list(v.shape) for k, v in feeds.items()}, "kept": "int8" if keep else "fp32"}
        report(f"int8: {comp.name}: FP32 {1000 * fp32['median_s']:.1f} ms, INT8 {1000 * int8['median_s']:.1f} ms, "
               f"speed-up {speedup:.2f}x" + ("" if keep else " — INT8 is not faster: keeping FP32 (use --force-int8)"),
               0, None)
        variants = art.draft["components"][comp.name]["variants"]["int8"]
        diffusion = art.family in ("unet", "stable-diffusion")
        variants[opts.backend.value].update(
            calibration={"seed": opts.seed, "items": len(comp.feeds), "samples": opts.samples,
                         "sampler": opts.sampler if diffusion else None, "steps": opts.steps if diffusion else None,
                         "data": str(opts.calibration_data) if opts.calibration_data else None},
            speed=speed[comp.name])
        if not keep:
            for name in _variant_files(variants.pop(opts.backend.value)["file"]):
                (art.path / name).unlink(missing_ok=True)
    report(stage, len(comps), len(comps))
    return speed


def quantize_artifact(staging: Path, manifest: dict, options: Int8Options = Int8Options(), *,
                      progress: ProgressCallback | None = None) -> dict:
    """Add INT8 variants to an artifact being staged (its directory and its manifest dict, filled in
    place); returns the quantization report (also stored as ``manifest["quantization"]["int8"]``).

    Raises:
        QualityGateError: the quality gate still fails after ``max_rounds`` rounds of fallback.
        EdgegenError: unreadable calibration data; BackendUnavailableError: the quantizer's
            backend is not installed.
    """
    report = progress or silent
    art = Artifact.staged(staging, manifest)  # its typed spec follows the variants added below
    opts = options.resolved(art.family, lcm=art.spec.guidance_embedding is not None)
    report(f"int8: calibration ({opts.samples} samples, seed {opts.seed})", 0, None)
    # Recorded feeds and reference outputs go to disk, inside the staging directory (so on the
    # same file system as the artifact), and are removed on success and on failure alike.
    with tempfile.TemporaryDirectory(dir=staging, prefix=".int8-feeds-") as scratch:
        calibration = calibration_feeds(art, opts, progress=report, directory=Path(scratch) / "calibration")
        comps = [_Component(name, art.component_path(name), feeds, quantizable_layers(art.component_path(name)))
                 for name, feeds in calibration.items() if feeds]
        reference = _reference(art, opts, calibration, report, Path(scratch) / "reference")
        thresholds, rounds = _gate_rounds(art, comps, opts, reference, report)
        del reference
        speed = _speed_gate(art, comps, opts, report)
        del comps, calibration
    result = {"backend": opts.backend.value, "thresholds": asdict(thresholds), "rounds": rounds, "speed": speed,
              "options": opts.as_json()}
    manifest.setdefault("quantization", {})["int8"] = result
    return result


def _stage_copy(source: Artifact, staging: Path, manifest: dict, backend: Backend) -> None:
    """Fill a staging directory with ``source``'s files (hard links where the file system allows;
    edgegen never writes a file in place) and its manifest, less the INT8 variants of ``backend``
    that quantizing is about to replace."""
    stale = {MANIFEST}
    carried = {k: v for k, v in source.spec.to_dict().items() if k not in manifest}
    for comp in carried.get("components", {}).values():
        old = comp.get("variants", {}).get("int8", {}).pop(backend.value, None)
        if old is not None:
            stale.update(_variant_files(old["file"]))
    manifest.update(carried)
    for path in sorted(source.path.rglob("*")):
        rel = path.relative_to(source.path)
        target = staging / rel
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif str(rel) not in stale:
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def quantize(model_input: str | Path, model_output: str | Path | None = None, *,
             options: Int8Options = Int8Options(), progress: ProgressCallback | None = None) -> Path:
    """Read the artifact at ``model_input`` and write it with INT8 variants to ``model_output``.

    Path in, path out (ONNX Runtime's ``quantize_static(model_input, model_output, ...)``): the
    output is written atomically, so a failed gate leaves ``model_output`` as it was; ``None`` or
    the input's own path replaces the input atomically. Existing INT8 variants for the same
    backend are replaced, other files carried over unchanged; for OpenVINO, FP32 components without
    their IR get it (:func:`edgegen.compile.openvino.add_openvino_ir`). No torch is imported.

    Args:
        options: quantizer backend, calibration and gate thresholds (:class:`Int8Options`).
        progress: ``(stage, done, total)`` reports: calibration seeds, gate samples, fallback
            rounds and speed-gate components with counts, figures as messages.
    Returns:
        the output artifact's directory.
    Raises:
        ArtifactError: the input is not an artifact, or the output exists and is not one.
        QualityGateError, BackendUnavailableError, EdgegenError: see :func:`quantize_artifact`.
    """
    source = Artifact.load(model_input)
    out = Path(model_output) if model_output is not None else source.path
    with atomic_artifact(out) as (staging, manifest):
        _stage_copy(source, staging, manifest, options.backend)
        if options.backend is Backend.openvino:  # artifacts exported before IR was stored get it here
            add_openvino_ir(Artifact.staged(staging, manifest), progress=progress)
        quantize_artifact(staging, manifest, options, progress=progress)
    return out
