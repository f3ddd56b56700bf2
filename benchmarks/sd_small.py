"""The sd_small suite: random-init SD (51M-param U-Net), 256 px, 20 steps, CFG 7.5, on OpenVINO
and ONNX Runtime, FP32 and INT8, measured by `edgegen bench` in one run.

    python benchmarks/sd_small.py [--steps 20] [--runs 3]

Prints edgegen's share of wall time outside engines (goal <= 2%), end-to-end time over the sum
of engine calls (goal <= 1.1x) and the INT8 / FP32 and OpenVINO / ONNX Runtime ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from common import CACHE, RESULTS, printed, random_sd_artifact, save_result


def int8_artifact(backend: str):
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import export_stable_diffusion

    src, art = CACHE / "sd-small-src", CACHE / f"sd-small-int8-{backend}"
    random_sd_artifact("small")
    if not (art / "edgegen.json").exists():
        export_stable_diffusion(src, art, int8=Int8Options(backend=backend, samples=2, steps=10, gate_samples=1, force=True),
                                progress=printed("  [export] "))
    return art


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    arts = [int8_artifact("openvino"), int8_artifact("onnxruntime")]
    out = RESULTS / "sd_small_report"
    rows = []
    for art, backend in zip(arts, ("openvino", "onnxruntime")):
        subprocess.run([sys.executable, "-m", "edgegen", "bench", str(art), "--backend", backend, "--steps",
                        str(args.steps), "--runs", str(args.runs), "--num-images", "1", "--out", str(out / backend),
                        "--json"], check=True, capture_output=True)
        rows += json.loads((out / backend / "report.json").read_text())["results"]
    by = {(r["backend"], r["precision"]): r for r in rows}
    for (backend, precision), r in by.items():
        print(f"{backend:12s} {precision}: {r['seconds_per_image']['median']:.3f} s/image, outside engines "
              f"{100 * r['outside_share']:.2f}% (goal <= 2%), wall / sum of engines {r['engine_sum_ratio']:.4f} "
              f"(goal <= 1.1), unet {1000 * r['engines']['unet']['seconds_per_image'] / args.steps:.1f} ms/step, "
              f"peak RSS {r['peak_rss_mb']:.0f} MiB, PSNR vs FP32 {r.get('quality', {}).get('psnr_db', {}).get('median', float('nan')):.2f} dB")
    ratios = {}
    for backend in ("openvino", "onnxruntime"):
        if (backend, "int8") in by:
            ratios[f"{backend} int8/fp32 time"] = by[(backend, "int8")]["seconds_per_image"]["median"] / by[(backend, "fp32")]["seconds_per_image"]["median"]
    ratios["openvino/onnxruntime fp32 time"] = by[("openvino", "fp32")]["seconds_per_image"]["median"] / by[("onnxruntime", "fp32")]["seconds_per_image"]["median"]
    for k, v in ratios.items():
        print(f"{k}: {v:.3f}")
    slim = [{k: v for k, v in r.items() if k not in ("images",)} for r in rows]
    print(f"results: {save_result('sd_small', {'steps': args.steps, 'ratios': ratios, 'results': slim})}")


if __name__ == "__main__":
    main()
