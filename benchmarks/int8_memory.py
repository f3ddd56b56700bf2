"""Peak RSS per stage of ``export_stable_diffusion(..., int8=...)`` (issue 12 item 4).

A psutil thread samples this process's RSS every 0.2 s; each sample is charged to the stage
last reported through edgegen's ProgressCallback (messages included). Peaks are also given as a multiple of the U-Net's FP32 weight bytes (its ONNX
initializers), the ratio that carries to SD 1.5 size (860M params = 3.44 GB).

    python benchmarks/int8_memory.py [--preset small] [--size 512] [--out FILE]

The INT8 options are sd15_size.py's (samples=1, steps=4, gate_samples=1, force, thresholds 0).
Slow at SD 1.5 size (tens of minutes); the small preset takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil

from common import CACHE, printed


class RssSampler:
    """Samples RSS every ``interval`` seconds in a daemon thread; ``progress`` moves the stage."""

    def __init__(self, interval: float = 0.2, echo=None, log: Path | None = None):
        self.interval, self.echo, self.log = interval, echo, log
        self.process, self.stage, self.start = psutil.Process(), "start", time.perf_counter()
        self.peaks: dict[str, dict] = {}
        self.timeline: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        rss, now = self.process.memory_info().rss, time.perf_counter() - self.start
        entry = self.peaks.setdefault(_stage_key(self.stage), {"peak_rss": 0, "first_s": now, "last_s": now})
        entry["peak_rss"], entry["last_s"] = max(entry["peak_rss"], rss), now
        self.timeline.append((round(now, 2), self.stage, rss))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def progress(self, stage: str, done: int = 0, total: int | None = None) -> None:
        if self.echo is not None:
            self.echo(stage, done, total)
        if stage != self.stage:
            self._sample()
            if self.log is not None:  # a line per finished stage, so that a killed run keeps its figures
                with open(self.log, "a") as f:
                    f.write(json.dumps({"stage": self.stage, **self.peaks[_stage_key(self.stage)]}) + "\n")
            self.stage = stage
            self._sample()

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


def _stage_key(stage: str) -> str:
    """Group per-round stages ("round 3: quantizing ... (12 layer(s) in float)") under one key."""
    return re.sub(r"\(\d+ layer\(s\) in float\)", "", re.sub(r"round \d+", "round N", stage)).strip()


def unet_weight_bytes(onnx_path: Path) -> int:
    """FP32 bytes of the model's initializers (4 per element), read from the graph, not the data."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    total = 0
    for t in model.graph.initializer:
        n = 1
        for d in t.dims:
            n *= d
        total += n * 4
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import export_stable_diffusion
    from random_sd import build_random_sd

    out = args.out or CACHE / f"int8_memory-{args.preset}-{args.size}.json"
    src, art = CACHE / f"sd-{args.preset}-src", CACHE / f"{out.stem}.artifact"
    if not (src / "model_index.json").exists():
        build_random_sd(src, args.preset, seed=0)
    shutil.rmtree(art, ignore_errors=True)
    opts = Int8Options(samples=1, steps=args.steps, gate_samples=1, force=True, height=args.size, width=args.size,
                       min_psnr=0, min_ssim=0, max_step_error=1.0)
    t = time.perf_counter()
    with RssSampler(echo=printed("  "), log=out.with_suffix(".stages.jsonl")) as sampler:
        export_stable_diffusion(src, art, int8=opts, progress=sampler.progress)
    seconds = time.perf_counter() - t
    weights = unet_weight_bytes(art / "unet.onnx")
    manifest = json.loads((art / "edgegen.json").read_text())
    figures = manifest["quantization"]["int8"]["rounds"][-1]["figures"]
    result = {"preset": args.preset, "size": args.size, "steps": args.steps, "seconds": seconds,
              "unet_weight_bytes": weights, "peak_rss_gib": max(p["peak_rss"] for p in sampler.peaks.values()) / 2**30,
              "stages": {k: {**v, "peak_rss_gib": v["peak_rss"] / 2**30, "x_unet": v["peak_rss"] / weights}
                         for k, v in sampler.peaks.items()},
              "gate": {"psnr_median": figures["psnr_db"]["median"], "step_rel_error": figures.get("step_rel_error")}}
    out.write_text(json.dumps({**result, "timeline": sampler.timeline}, indent=1))
    print(f"U-Net weights {weights / 2**30:.3f} GiB; total {seconds:.0f} s; peak {result['peak_rss_gib']:.2f} GiB")
    for stage, v in result["stages"].items():
        print(f"{v['peak_rss_gib']:7.2f} GiB {v['x_unet']:6.1f}x  {v['last_s'] - v['first_s']:7.1f} s  {stage}")
    print(f"gate: {result['gate']}")
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
