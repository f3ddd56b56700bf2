"""SD 1.5 at full size (860M-param U-Net, random weights, 512 px): export time, per-step U-Net
latency and peak memory, FP32 vs INT8 (OpenVINO). Slow (tens of minutes on 2 cores): not in CI.

    python benchmarks/sd15_size.py [--steps 4]

Each phase runs in its own process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import CACHE, save_result


def _phase(code: str) -> dict:
    """Run python code in a child; it prints one JSON line last, with its own peak RSS added
    (VmHWM: the child's ru_maxrss would start at this parent's peak, see edgegen.bench.worker)."""
    code += ("\nfrom edgegen.bench.worker import peak_rss_mib as _peak"
             "\nprint(json.dumps({**_result, 'peak_rss_gb': _peak() / 1024}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    src, art = CACHE / "sd-sd15-src", CACHE / "sd-sd15"
    prelude = (f"import json, time, sys; sys.path.insert(0, {str(CACHE.parent.parent)!r}); "
               f"sys.path.insert(0, {str(CACHE.parent)!r})\nfrom common import printed\n")
    results = {}
    if not (src / "model_index.json").exists():
        results["build"] = _phase(prelude + f"""
t = time.perf_counter()
from random_sd import build_random_sd
build_random_sd({str(src)!r}, "sd15")
_result = {{"seconds": time.perf_counter() - t}}""")
    results["export_fp32_int8"] = _phase(prelude + f"""
t = time.perf_counter()
from edgegen.export import export_stable_diffusion
from edgegen.calibration.int8 import Int8Options
export_stable_diffusion({str(src)!r}, {str(art)!r}, progress=printed(),
    int8=Int8Options(samples=1, steps={args.steps}, gate_samples=1, force=True, height=512, width=512,
                     min_psnr=0, min_ssim=0, max_step_error=1.0))
m = json.load(open({str(art / 'edgegen.json')!r}))
_result = {{"seconds": time.perf_counter() - t, "int8": m["quantization"]["int8"]["speed"]["unet"],
           "step_rel_error": m["quantization"]["int8"]["rounds"][-1]["figures"]["step_rel_error"]}}""")
    for precision in ("fp32", "int8"):
        results[f"unet_{precision}"] = _phase(prelude + f"""
import numpy as np
from edgegen.artifact import Artifact
from edgegen.runtimes import load_engine
art = Artifact.load({str(art)!r})
t = time.perf_counter()
engine = load_engine(art.component_path("unet", None if "{precision}" == "fp32" else "{precision}", "openvino"),
                     "openvino", precision="{precision}")
load = time.perf_counter() - t
rng = np.random.default_rng(0)
feeds = {{"sample": rng.standard_normal((2, 4, 64, 64), dtype=np.float32),
          "timestep": np.full((2,), 500.0, np.float32),
          "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32)}}
engine(feeds)
times = []
for _ in range({args.steps}):
    t = time.perf_counter(); engine(feeds); times.append(time.perf_counter() - t)
_result = {{"load_s": load, "step_s_median": float(np.median(times)), "step_s_all": times,
           "note": "one CFG step: batch 2, 64x64 latents (512 px), 77 tokens"}}""")
    fp, q = results["unet_fp32"], results["unet_int8"]
    print(f"U-Net step (CFG batch 2, 512 px): FP32 {fp['step_s_median']:.2f} s, INT8 {q['step_s_median']:.2f} s, "
          f"speed-up {fp['step_s_median'] / q['step_s_median']:.2f}x")
    print(f"peak RSS: FP32 run {fp['peak_rss_gb']:.2f} GiB, INT8 run {q['peak_rss_gb']:.2f} GiB (goal INT8 <= 2.5 GB); "
          f"export+quantize {results['export_fp32_int8']['peak_rss_gb']:.2f} GiB in {results['export_fp32_int8']['seconds']:.0f} s")
    print(f"results: {save_result('sd15_size', {'steps': args.steps, 'results': results})}")


if __name__ == "__main__":
    main()
