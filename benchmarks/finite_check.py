"""Cost of the engines' finite checks (``np.isfinite(x).all()`` on every float feed and output)
on the small random-init SD: 256 px, 20 steps, CFG 7.5, one image, OpenVINO and ONNX Runtime.

    python benchmarks/finite_check.py [--artifact DIR] [--steps 20] [--runs 2]

The time spent inside the check is measured directly (each backend's ``check_finite`` is wrapped
with a timer), so the figure does not drown in run-to-run noise of a shared machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import random_sd_artifact, save_result


def measure(artifact: Path, backend: str, steps: int, runs: int) -> dict:
    import edgegen.runtimes.onnxruntime as ort_mod
    import edgegen.runtimes.openvino as ov_mod
    from edgegen import Pipeline
    from edgegen.runtimes.base import check_finite

    spent = {"s": 0.0, "calls": 0}

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return check_finite(*args, **kwargs)
        finally:
            spent["s"] += time.perf_counter() - start
            spent["calls"] += 1

    ort_mod.check_finite = ov_mod.check_finite = timed
    pipe = Pipeline.load(artifact, backend=backend)
    pipe("a lighthouse", num_inference_steps=2, seed=0)  # warm-up
    walls, checks = [], []
    for run in range(runs):
        spent.update(s=0.0, calls=0)
        start = time.perf_counter()
        pipe("a lighthouse at dusk", num_inference_steps=steps, guidance_scale=7.5, seed=run)
        walls.append(time.perf_counter() - start)
        checks.append(spent["s"])
    share = [c / w for c, w in zip(checks, walls)]
    print(f"{backend:12s} wall {min(walls):.2f} s, finite checks {1000 * max(checks):.2f} ms in {spent['calls']} calls, "
          f"share {100 * max(share):.4f}% (goal <= 0.5%)", flush=True)
    return {"backend": backend, "wall_s": walls, "check_s": checks, "check_calls": spent["calls"], "share_max": max(share)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifact", type=Path, default=None, help="small SD artifact (default: build one)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    art = args.artifact or random_sd_artifact("small")
    rows = [measure(art, backend, args.steps, args.runs) for backend in ("openvino", "onnxruntime")]
    print(f"results: {save_result('finite_check', {'steps': args.steps, 'height': 256, 'results': rows})}")


if __name__ == "__main__":
    main()
