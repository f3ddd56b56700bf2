"""The INT8 quality gate (whole-pipeline images and per-step U-Net error) and speed gate.

Quality: the FP32 and INT8 pipelines run the same inputs and the same noise; final images are
compared by PSNR and SSIM (:func:`edgegen.metrics.image_figures`), and for diffusion the INT8
U-Net is also run on the FP32 trajectory's own feeds, step by step, giving the relative L2 error
of its output per step.
Speed: each component's FP32 and INT8 engines are timed on the exported shapes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class QualityThresholds:
    """A gate passes when median PSNR >= min_psnr (dB), mean SSIM >= min_ssim and (diffusion)
    the U-Net's per-step relative error, averaged over steps, <= max_step_error.

    The average, not the maximum: at the last steps the predicted noise is tiny and its relative
    error large without consequence for the image (the x0 estimate barely depends on it).
    """

    min_psnr: float
    min_ssim: float
    max_step_error: float | None = None


def step_errors(reference_per_step: Sequence[Sequence[np.ndarray]], int8_engine,
                feeds_per_step: Sequence[Sequence[Mapping[str, np.ndarray]]], *,
                progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Relative L2 error of the INT8 U-Net output per step, on the FP32 trajectory's feeds.

    Args:
        reference_per_step: ``[s][i]`` the FP32 U-Net's output for ``feeds_per_step[s][i]``,
            recorded when the FP32 trajectory ran (so no FP32 engine needs to stay loaded).
        int8_engine: the INT8 U-Net; its first output is compared.
        feeds_per_step: ``[s]`` lists the feeds seen at step s (one per gate sample).
        progress: called ``(done, total)`` after each step.
    Returns:
        per step, ``||int8 - fp32|| / ||fp32||`` over that step's items (0 where the reference is 0).
    """
    errors = []
    for step, (references, feeds) in enumerate(zip(reference_per_step, feeds_per_step)):
        diff = ref = 0.0
        for a, item in zip(references, feeds):
            a = np.asarray(a, dtype=np.float64)
            b = next(iter(int8_engine(item).values())).astype(np.float64)
            diff += float(((a - b) ** 2).sum())
            ref += float((a**2).sum())
        errors.append((diff / ref) ** 0.5 if ref else 0.0)
        if progress is not None:
            progress(step + 1, len(feeds_per_step))
    return errors


def judge(figures: dict, thresholds: QualityThresholds) -> list[str]:
    """The failed criteria, as readable lines (empty when the gate passes)."""
    failed = [f"INT8 output not finite: {figures['nonfinite']}"] if figures.get("nonfinite") else []
    if figures["psnr_db"]["median"] < thresholds.min_psnr:
        failed.append(f"median PSNR {figures['psnr_db']['median']:.2f} dB < {thresholds.min_psnr} dB")
    if figures["ssim"]["mean"] < thresholds.min_ssim:
        failed.append(f"mean SSIM {figures['ssim']['mean']:.4f} < {thresholds.min_ssim}")
    steps = figures.get("step_rel_error")
    if thresholds.max_step_error is not None and steps and float(np.mean(steps)) > thresholds.max_step_error:
        failed.append(f"mean per-step U-Net relative error {float(np.mean(steps)):.4f} > {thresholds.max_step_error}")
    return failed


def latency(engine, feeds: Mapping[str, np.ndarray], *, runs: int | None = None, warmup: int = 1) -> dict:
    """Median and minimum seconds of ``runs`` calls after ``warmup`` calls, on the same feeds.

    ``runs=None`` picks enough calls for ~0.3 s of measurement (5 to 200): sub-millisecond
    engines need many calls for a stable median.
    """
    for _ in range(warmup):
        start = time.perf_counter()
        engine(feeds)
        first = time.perf_counter() - start
    if runs is None:
        runs = int(min(200, max(5, 0.3 / max(first, 1e-6))))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        engine(feeds)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs}
