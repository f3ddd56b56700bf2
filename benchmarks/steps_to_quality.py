"""Steps to quality on the bundled class-conditional digit U-Net: DDIM 50 vs DPM-Solver++ 2M.

    python benchmarks/steps_to_quality.py [--per-class 100] [--out benchmarks/results/steps_to_quality.json]

For each sampler setting, ``10 * per_class`` digits (the same labels, guidance and interval as the
demo: the artifact's default) are scored by the bundled classifier: agreement (share classified as
the requested digit), mean confidence, and the Fréchet distance of its 64-d features to the real
digits (all 1,797 sklearn digits, upsampled to 32x32 as in training) and to the DDIM-50 samples.
DDIM 50 is run with two seeds: the distance and agreement gap between them is the sampling noise
a sampler must come within to "reach DDIM-50's figures". Rows are written after each setting, so
an interrupted run keeps what it measured. Needs torch only to read the real digits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgegen import Pipeline  # noqa: E402
from edgegen.atomic import write_json_atomic  # noqa: E402
from edgegen.metrics import frechet_distance  # noqa: E402
from edgegen.demo import GUIDANCE_SCALE, export_zoo  # noqa: E402
from edgegen.runtimes import load_engine  # noqa: E402

DPM_STEPS = (6, 8, 10, 12, 15, 20)


def settings() -> list[dict]:
    """DDIM 50 with two seeds first (the reference and its noise), then DPM++ 2M: Karras at every step
    count, then discrete (an interrupted run has the Karras column whole)."""
    rows = [dict(name="ddim-50", sampler="ddim", sigmas="discrete", steps=50, seed=0),
            dict(name="ddim-50 (seed 2)", sampler="ddim", sigmas="discrete", steps=50, seed=1_000_000)]
    for sigmas in ("karras", "discrete"):
        for steps in DPM_STEPS:
            rows.append(dict(name=f"dpmpp-2m {sigmas} {steps}", sampler="dpmpp-2m", sigmas=sigmas, steps=steps, seed=0))
    return rows


def classify(classifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 32, 32, 1) in [0, 1] -> (probabilities (N, 10), features (N, 64)), in chunks."""
    probs, feats = [], []
    for i in range(0, len(images), 500):
        out = classifier({"images": np.ascontiguousarray(images[i:i + 500].transpose(0, 3, 1, 2), np.float32)})
        logits = out["logits"].astype(np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        probs.append(p / p.sum(1, keepdims=True))
        feats.append(out["features"].astype(np.float64))
    return np.concatenate(probs), np.concatenate(feats)


def real_features(classifier) -> np.ndarray:
    sys.path.insert(0, str(Path(__file__).parent / "zoo"))
    from training import digits

    data = digits(0)
    x = np.concatenate([data["train"][0].numpy(), data["test"][0].numpy()])  # (N, 1, 32, 32) in [-1, 1]
    return classify(classifier, ((x + 1) / 2).transpose(0, 2, 3, 1))[1]


def sample(pipe, setting: dict, labels: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    images, start = [], time.perf_counter()
    for i in range(0, len(labels), batch):
        chunk = labels[i:i + batch]
        images.append(pipe(class_label=chunk, num_images=len(chunk), num_inference_steps=setting["steps"],
                           sampler=setting["sampler"], sigmas=setting["sigmas"], guidance_scale=GUIDANCE_SCALE,
                           seed=setting["seed"] + i).images)
    return np.concatenate(images), time.perf_counter() - start


def table(report: dict) -> list[str]:
    """The results as Markdown lines for edgegen/zoo/MODEL_CARDS.md (``benchmarks/zoo/cards.py`` includes them)."""
    rows = report["rows"]
    lines = [f"Steps to quality (`benchmarks/steps_to_quality.py`): {report['samples']} samples per setting "
             f"({report['samples'] // 10} per digit), guidance {report['guidance_scale']:g} "
             f"{'at every step' if not report.get('guidance_interval') else 'where sigma is in (%g, %g]' % tuple(report['guidance_interval'])}, "
             f"{report['backend']}; FD = Fréchet distance of the classifier's 64-d features, to the 1,797 real digits "
             "and to the DDIM-50 samples. The DDIM-50 seed-2 row is the sampling noise of these figures. Every other "
             "row starts from DDIM-50's initial noise (seed 0), so its FD to DDIM-50 is a distance between paired "
             "trajectories, smaller than the seed-to-seed noise by construction; compare FD to real and agreement "
             "with the two DDIM-50 rows instead. Seconds: wall time on a shared 2-core machine (indicative only).", "",
             "| sampler | steps | classified as requested | mean confidence | FD to real | FD to DDIM-50 | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fd = "-" if r["fd_ddim50"] is None or r["name"] == "ddim-50" else f"{r['fd_ddim50']:.2f}"
        label = r["name"].rsplit(" ", 1)[0] if r["sampler"] == "dpmpp-2m" else r["name"].replace("-50", "")
        lines.append(f"| {label} | {r['steps']} | {100 * r['agreement']:.1f}% | {r['mean_confidence']:.3f} | "
                     f"{r['fd_real']:.2f} | {fd} | {r['seconds']:.0f} |")
    # What the figures say, written by whoever ran it and kept in the results file.
    return lines + (["", report["reading"]] if report.get("reading") else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--only", nargs="*", help="names of settings to run (default all)")
    parser.add_argument("--artifacts", type=Path, help="an `export_zoo` directory to reuse")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "steps_to_quality.json")
    args = parser.parse_args()
    work = args.artifacts or Path(tempfile.mkdtemp(prefix="edgegen-stq-"))
    if not (work / "digits-diffusion").is_dir():
        export_zoo(work, int8=False, progress=lambda m: None)
    pipe = Pipeline.load(work / "digits-diffusion", backend="onnxruntime")
    classifier = load_engine(work / "digit-classifier.onnx", "onnxruntime")
    real = real_features(classifier)
    labels = np.repeat(np.arange(10), args.per_class)
    report = {"samples": len(labels), "guidance_scale": GUIDANCE_SCALE, "backend": "onnxruntime",
              "guidance_interval": pipe.conditioning.get("guidance_interval"), "rows": []}
    ddim_features = None
    for setting in settings():
        if args.only and setting["name"] not in args.only:
            continue
        images, seconds = sample(pipe, setting, labels, args.batch)
        probs, feats = classify(classifier, images)
        ddim_features = feats if setting["name"] == "ddim-50" else ddim_features
        row = {**setting, "agreement": float((probs.argmax(1) == labels).mean()),
               "mean_confidence": float(probs.max(1).mean()), "fd_real": frechet_distance(real, feats),
               "fd_ddim50": None if ddim_features is None else frechet_distance(ddim_features, feats),
               "seconds": seconds}
        report["rows"].append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        write_json_atomic(args.out, report)


if __name__ == "__main__":
    main()
