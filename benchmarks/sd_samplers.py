"""Seconds per image on the small SD (51M-param U-Net, 256 px): samplers x decoders x precisions.

    python benchmarks/sd_samplers.py [--repeats 3] [--backend openvino] [--preset small] [--prepare]

DDIM 50 and DPM++ 2M 20 (Karras sigmas) with CFG 7.5 on a random-init SD; LCM 4 (guidance as the
U-Net's w-embedding, one U-Net call per step, no CFG batch) on a random-init LCM-distilled SD of
the same size; each with the full VAE decoder and the tiny one (TAESD's architecture at the
preset's width, ``tests/random_sd.py build_random_tiny_vae``), FP32 and INT8 (the artifact's INT8
variants for the backend, kept for every component: ``force=True``). End-to-end wall time
of one pipeline call per image (text encoding, sampling, decode), printed as ratios to DDIM-50
FP32 full-decoder. Repeats are interleaved (every setting once, then again, order rotated), so
machine noise hits all settings alike; medians are reported.

The weights are random: these are timing figures only, not quality ones. LCM's U-Net costs what
SD's does per call plus the w-embedding's two small linear layers (``time_cond_proj_dim``), so
its saving is fewer calls (4 vs 50 x 2 CFG rows).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import CACHE, printed, save_result

PROMPT = "a photograph of an astronaut riding a horse"
# name -> (sampler, sigmas, steps, guidance_scale, LCM artifact)
SAMPLERS = {"ddim-50": ("ddim", None, 50, 7.5, False),
            "dpmpp-2m-karras-20": ("dpmpp-2m", "karras", 20, 7.5, False),
            "lcm-4": ("lcm", None, 4, 8.0, True)}
DECODERS = ("full", "tiny")
PRECISIONS = ("fp32", "int8")


def artifact(*, lcm: bool, backend: str, preset: str = "small"):
    """Build (once, cached) a random-init SD or LCM pipeline of ``preset`` size and a random tiny VAE
    of the same preset, and export them with an INT8 variant for ``backend``; returns the artifact path."""
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import export_stable_diffusion
    from random_sd import build_random_sd, build_random_tiny_vae

    name = f"sd-{preset}{'-lcm' if lcm else ''}"
    source, tiny, art = CACHE / f"{name}-src", CACHE / f"tiny-vae-{preset}", CACHE / f"{name}-samplers-{backend}"
    if not (source / "model_index.json").exists():
        build_random_sd(source, preset, seed=0, lcm=lcm)
    if not (tiny / "config.json").exists():
        build_random_tiny_vae(tiny, preset, seed=0)
    calibration = (dict(sampler="lcm", steps=4, guidance_scale=8.0) if lcm else dict(steps=10))
    if not (art / "edgegen.json").exists():
        export_stable_diffusion(source, art, tiny_vae=tiny, progress=printed("  [export] "),
                                int8=Int8Options(backend=backend, samples=2, gate_samples=1, force=True, **calibration))
    return art


def settings() -> list[dict]:
    return [dict(name=f"{s} {p} {d}", sampler=s, precision=p, decoder=d)
            for s in SAMPLERS for p in PRECISIONS for d in DECODERS]


def call(pipe, setting: dict, seed: int):
    """One image; returns the pipeline's Generation."""
    sampler, sigmas, steps, guidance, _ = SAMPLERS[setting["sampler"]]
    return pipe(PROMPT, num_inference_steps=steps, sampler=sampler, sigmas=sigmas, guidance_scale=guidance,
                seed=seed, decoder=setting["decoder"])


def measure(pipes: dict, rows: list[dict], repeats: int) -> dict[str, list[dict]]:
    """Per setting, one ``{"seconds", "unet_s", "decoder_s"}`` per repeat; repeats interleaved, order rotated."""
    times = {r["name"]: [] for r in rows}
    for rep in range(repeats):
        order = rows[rep % len(rows):] + rows[:rep % len(rows)]
        for setting in order:
            pipe = pipes[(SAMPLERS[setting["sampler"]][4], setting["precision"])]
            start = time.perf_counter()
            result = call(pipe, setting, seed=rep)
            seconds = time.perf_counter() - start
            engines = result.timings["engines"]
            decoder = "vae_decoder_tiny" if setting["decoder"] == "tiny" else "vae_decoder"
            times[setting["name"]].append({"seconds": seconds, "unet_s": engines["unet"]["seconds"],
                                           "decoder_s": engines[decoder]["seconds"]})
            print(f"  repeat {rep + 1}/{repeats} {setting['name']}: {seconds:.2f} s", flush=True)
    return times


def summarize(rows: list[dict], times: dict[str, list[dict]]) -> list[dict]:
    """Median seconds (end to end, U-Net, decoder) per setting and the ratio to DDIM-50 FP32 full."""
    out = []
    for setting in rows:
        runs = times[setting["name"]]
        out.append({**setting, **{k: statistics.median(r[k] for r in runs) for k in ("seconds", "unet_s", "decoder_s")},
                    "all_seconds": [r["seconds"] for r in runs]})
    base = next(r["seconds"] for r in out if r["name"] == "ddim-50 fp32 full")
    for r in out:
        r["ratio"] = r["seconds"] / base
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--preset", default="small", help="tests/random_sd.py size (tiny: a quick check of the script)")
    parser.add_argument("--prepare", action="store_true", help="only build and export the artifacts (cached)")
    args = parser.parse_args()
    from edgegen import Pipeline

    arts = {lcm: artifact(lcm=lcm, backend=args.backend, preset=args.preset)
            for lcm in sorted({spec[4] for spec in SAMPLERS.values()})}
    if args.prepare:
        return
    pipes = {(lcm, p): Pipeline.load(arts[lcm], backend=args.backend, precision=p) for lcm in arts for p in PRECISIONS}
    rows = settings()
    for setting in rows:  # warm-up: first calls compile kernels and allocate
        pipe = pipes[(SAMPLERS[setting["sampler"]][4], setting["precision"])]
        pipe(PROMPT, num_inference_steps=2, sampler=SAMPLERS[setting["sampler"]][0], decoder=setting["decoder"])
    results = summarize(rows, measure(pipes, rows, args.repeats))
    print(f"\n{'setting':32s} {'s/image':>8s} {'U-Net s':>8s} {'decode s':>8s} {'vs DDIM-50 FP32 full':>21s}")
    for r in results:
        print(f"{r['name']:32s} {r['seconds']:8.2f} {r['unet_s']:8.2f} {r['decoder_s']:8.3f} {r['ratio']:21.3f}")
    size = pipes[(False, "fp32")].image
    path = save_result("sd_samplers" if args.preset == "small" else f"sd_samplers_{args.preset}",
                       {"backend": args.backend, "preset": args.preset, "prompt": PROMPT, "height": size.height,
                        "width": size.width, "repeats": args.repeats, "weights": "random-init (timing only)",
                        "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
