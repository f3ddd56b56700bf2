"""Where the time goes in an edgegen SD run: engines vs everything else.

For a random-init SD artifact (default: the ``small`` preset, 51M-param U-Net, 256 px), runs
text-to-image with CFG and prints, per backend, wall time per image, the share of wall time
spent outside engine calls (goal <= 2%), and each component's engine time.

    python benchmarks/sd_overhead.py [--preset small] [--steps 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics

from common import random_sd_artifact, save_result

from edgegen import Pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "sd15"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument("--backends", default="openvino,onnxruntime")
    args = parser.parse_args()

    art = random_sd_artifact(args.preset)
    rows = {}
    for backend in args.backends.split(","):
        pipe = Pipeline.load(art, backend=backend)
        pipe("warm-up", num_inference_steps=2, guidance_scale=args.guidance_scale)
        runs = [pipe("a lighthouse at dusk", num_inference_steps=args.steps, guidance_scale=args.guidance_scale,
                     seed=i, sampler="euler-a") for i in range(args.runs)]
        total = statistics.median(r.timings["total_s"] for r in runs)
        outside = statistics.median(r.timings["outside_s"] / r.timings["total_s"] for r in runs)
        engines = {name: statistics.median(r.timings["engines"][name]["seconds"] for r in runs)
                   for name in runs[0].timings["engines"]}
        calls = runs[0].timings["engines"]
        rows[backend] = {"seconds_per_image": total, "outside_share": outside, "engine_seconds": engines,
                         "engine_calls": {k: v["calls"] for k, v in calls.items()},
                         "unet_ms_per_call": 1000 * engines["unet"] / calls["unet"]["calls"]}
        print(f"{backend:12s} {total:7.3f} s/image   outside engines {100 * outside:5.2f}% "
              f"(goal <= 2%)   sum of engines / wall = {sum(engines.values()) / total:.4f}")
        for name, seconds in engines.items():
            print(f"    {name:14s} {seconds:7.3f} s over {calls[name]['calls']:3d} calls "
                  f"({1000 * seconds / calls[name]['calls']:.1f} ms/call)")
    if len(rows) == 2:
        a, b = rows.values()
        print(f"openvino / onnxruntime time ratio: {a['seconds_per_image'] / b['seconds_per_image']:.3f}")
    path = save_result(f"sd_overhead_{args.preset}", {"preset": args.preset, "steps": args.steps,
                                                       "guidance_scale": args.guidance_scale, "results": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
