"""Steps to quality on the bundled class-conditional digit U-Net: DDIM 50 vs DPM-Solver++ 2M.

    python benchmarks/steps_to_quality.py [--per-class 100] [--only all] [--minutes 60] [--resume]
        [--out benchmarks/results/steps_to_quality.json]

For each sampler setting, ``10 * per_class`` digits (the same labels, guidance and interval as the
demo: the artifact's default) are scored by the bundled classifier: agreement (share classified as
the requested digit), mean confidence, and the Fréchet distance of its 64-d features to the real
digits (all 1,797 sklearn digits, upsampled to 32x32 as in training) and to the DDIM-50 samples.
DDIM 50 is run with two seeds: the distance and agreement gap between them is the sampling noise
a sampler must come within to "reach DDIM-50's figures".

Cost: one U-Net row costs about 7 ms of one core (OpenVINO f32, batches of 50 images = 100 rows
with CFG); DDIM 50 is 100 rows per image, so the decisive settings (:data:`PRIORITY`, the
default) take ~2,200 CPU-seconds per 1,000 samples, the whole matrix ~3,400. On a shared machine
the settings run round-robin, 50 samples at a time, checkpointed after every batch
(``OUT.state.npz``, not committed): ``--minutes`` stops the run by itself with every setting at
the same count, ``--resume`` goes on from there. Needs torch only to read the real digits.
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
from edgegen.atomic import atomic_path, write_json_atomic  # noqa: E402
from edgegen.metrics import frechet_distance  # noqa: E402
from edgegen.demo import GUIDANCE_SCALE, export_zoo  # noqa: E402
from edgegen.runtimes import load_engine  # noqa: E402

DPM_STEPS = (6, 8, 10, 12, 15, 20)
# Run first (an interrupted run has the verdict): DDIM-50's two seeds, then the DPM++ settings the
# 100- and 300-sample runs put at or near DDIM-50's figures.
PRIORITY = ("ddim-50", "ddim-50 (seed 2)", "dpmpp-2m discrete 6", "dpmpp-2m karras 10", "dpmpp-2m discrete 8",
            "dpmpp-2m karras 8", "dpmpp-2m discrete 10", "dpmpp-2m karras 12")


def settings() -> list[dict]:
    """Every setting, in running order: :data:`PRIORITY` first, then the rest of DPM++ 2M (Karras, discrete)."""
    rows = [dict(name="ddim-50", sampler="ddim", sigmas="discrete", steps=50, seed=0),
            dict(name="ddim-50 (seed 2)", sampler="ddim", sigmas="discrete", steps=50, seed=1_000_000)]
    for sigmas in ("karras", "discrete"):
        for steps in DPM_STEPS:
            rows.append(dict(name=f"dpmpp-2m {sigmas} {steps}", sampler="dpmpp-2m", sigmas=sigmas, steps=steps, seed=0))
    rank = {name: i for i, name in enumerate(PRIORITY)}
    return sorted(rows, key=lambda r: rank.get(r["name"], len(rank)))


def table_order(row: dict) -> tuple:
    """DDIM rows first, then DPM++ by sigmas (Karras, discrete) and steps."""
    return (row["sampler"] != "ddim", row["sigmas"] != "karras", row["steps"], row["seed"])


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


def sample_batch(pipe, setting: dict, labels: np.ndarray, start: int) -> np.ndarray:
    """(len(labels), 32, 32, 1) images of one batch; its seed is the setting's plus the batch's offset."""
    return pipe(class_label=labels, num_images=len(labels), num_inference_steps=setting["steps"],
                sampler=setting["sampler"], sigmas=setting["sigmas"], guidance_scale=GUIDANCE_SCALE,
                seed=setting["seed"] + start).images


def run_batch(pipe, classifier, setting: dict, labels: np.ndarray, start: int, state: dict) -> None:
    """Sample and classify ``labels`` (the batch at ``start``) for one setting, appending to
    ``state[name]`` = (probs (n, 10), features (n, 64), seconds)."""
    probs, feats, seconds = state.get(setting["name"], (np.zeros((0, 10)), np.zeros((0, 64)), 0.0))
    begin = time.perf_counter()
    images = sample_batch(pipe, setting, labels, start)
    seconds += time.perf_counter() - begin
    p, f = classify(classifier, images)
    state[setting["name"]] = (np.concatenate([probs, p]), np.concatenate([feats, f]), seconds)


def run_round_robin(pipe, classifier, chosen: list[dict], labels: np.ndarray, batch: int, state: dict, *,
                    deadline: float, save) -> None:
    """Batch i of every chosen setting before batch i + 1 of any, so that a run stopped by the
    deadline (``time.time()``) leaves every setting at about the same sample count; resumes
    where ``state`` stops and calls ``save()`` after every batch."""
    for start in range(0, len(labels), batch):
        for setting in chosen:
            if len(state.get(setting["name"], ((),))[0]) > start:
                continue
            if time.time() > deadline:
                return
            run_batch(pipe, classifier, setting, labels[start:start + batch], start, state)
            save()


def table(report: dict) -> list[str]:
    """The results as Markdown lines for edgegen/zoo/MODEL_CARDS.md (``benchmarks/zoo/cards.py`` includes them)."""
    rows = sorted(report["rows"], key=table_order)
    n = min(r.get("samples", report["samples"]) for r in rows)
    lines = [f"Steps to quality (`benchmarks/steps_to_quality.py`): {n} samples per setting "
             f"({n // 10} per digit), guidance {report['guidance_scale']:g} "
             f"{'at every step' if not report.get('guidance_interval') else 'where sigma is in (%g, %g]' % tuple(report['guidance_interval'])}, "
             f"{report['backend']} f32; FD = Fréchet distance of the classifier's 64-d features, to the 1,797 real digits "
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


def rows(state: dict, labels: np.ndarray, real: np.ndarray, chosen: list[str]) -> list[dict]:
    """One result row per setting in ``state``, in running order. The ``chosen`` settings (run
    together) are all cut to the sample count they share, so their figures compare; ``samples``
    says each row's count."""
    common = min((len(state[n][0]) for n in chosen if n in state), default=0)
    cut = {n: (common if n in chosen else len(state[n][0])) for n in state}
    reference = state["ddim-50"][1][:cut["ddim-50"]] if cut.get("ddim-50", 0) >= 2 else None
    out = []
    for setting in settings():
        n = cut.get(setting["name"], 0)
        if n < 2:
            continue
        probs, feats, seconds = state[setting["name"]]
        probs, feats = probs[:n], feats[:n]
        out.append({**setting, "samples": n, "agreement": float((probs.argmax(1) == labels[:n]).mean()),
                    "mean_confidence": float(probs.max(1).mean()), "fd_real": frechet_distance(real, feats),
                    "fd_ddim50": None if reference is None else frechet_distance(reference, feats),
                    "seconds": seconds * n / len(state[setting["name"]][0])})
    return out


def load_state(path: Path) -> dict:
    """``{name: (probs, features, seconds)}`` saved by :func:`save_state`, or {}."""
    if not path.is_file():
        return {}
    with np.load(path) as stored:
        names = {key.rsplit("/", 1)[0] for key in stored.files}
        return {n: (stored[f"{n}/probs"], stored[f"{n}/features"], float(stored[f"{n}/seconds"])) for n in names}


def save_state(path: Path, state: dict) -> None:
    arrays = {}
    for name, (probs, feats, seconds) in state.items():
        arrays.update({f"{name}/probs": probs, f"{name}/features": feats, f"{name}/seconds": np.float64(seconds)})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50, help="images per pipeline call (the U-Net sees 2x: CFG)")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--only", nargs="*", help="names of settings to run (default: PRIORITY; 'all' for every one)")
    parser.add_argument("--artifacts", type=Path, help="an `export_zoo` directory to reuse")
    parser.add_argument("--resume", action="store_true", help="go on from the samples already in --out's state")
    parser.add_argument("--minutes", type=float, default=600, help="start no batch after this many minutes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "steps_to_quality.json")
    args = parser.parse_args()
    work = args.artifacts or Path(tempfile.mkdtemp(prefix="edgegen-stq-"))
    if not (work / "digits-diffusion").is_dir():
        export_zoo(work, int8=False, progress=lambda m, *_: None)
    pipe = Pipeline.load(work / "digits-diffusion", backend=args.backend)
    classifier = load_engine(work / "digit-classifier.onnx", "onnxruntime")
    real = real_features(classifier)
    # Interleaved labels: every prefix of a partial run is balanced over the digits.
    labels = np.tile(np.arange(10), args.per_class)
    report = {"samples": len(labels), "guidance_scale": GUIDANCE_SCALE, "backend": args.backend, "batch": args.batch,
              "guidance_interval": pipe.conditioning.guidance_interval, "rows": []}
    # Probabilities and features beside the results (not committed), to resume and to add rows later.
    state_path = args.out.with_suffix(".state.npz")
    state = load_state(state_path) if args.resume else {}
    deadline = time.time() + args.minutes * 60

    wanted = [st["name"] for st in settings()] if args.only == ["all"] else (args.only or PRIORITY)
    chosen = [st for st in settings() if st["name"] in wanted]
    names = [st["name"] for st in chosen]

    def save() -> None:
        save_state(state_path, state)
        report["rows"] = rows(state, labels, real, names)
        write_json_atomic(args.out, report)

    run_round_robin(pipe, classifier, chosen, labels, args.batch, state, deadline=deadline, save=save)
    for row in report["rows"]:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)


if __name__ == "__main__":
    main()
