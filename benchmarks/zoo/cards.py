"""Measure the bundled models through the runtime and write edgegen/zoo/MODEL_CARDS.md.

    python benchmarks/zoo/cards.py

Runs `edgegen demo`'s export + generation (without bench) and combines its figures with the
training cards (edgegen/zoo/*.json).
"""

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgegen import Pipeline  # noqa: E402
from edgegen.demo import GUIDANCE_SCALE, ZOO, class_agreement, run_demo  # noqa: E402
from edgegen.runtimes import load_engine  # noqa: E402

# (label, guidance scale, guidance interval) for the CFG study: 20 samples per digit, DDIM 50, seed 0
STUDY = ((f"guidance {GUIDANCE_SCALE:g}", GUIDANCE_SCALE, "default"),
         ("guidance 1 (conditional branch only)", 1.0, "default"),
         (f"guidance {GUIDANCE_SCALE:g} only where sigma <= 1.25", GUIDANCE_SCALE, (0.0, 1.25)),
         ("guidance 0 (unconditional branch only)", 0.0, None))


def guidance_study(work: Path) -> list[str]:
    pipe = Pipeline.load(work / "artifacts" / "digits-diffusion")
    classifier = load_engine(work / "artifacts" / "digit-classifier.onnx", "onnxruntime")
    rows = ["| sampling | classified as requested | " + " | ".join(str(c) for c in range(10)) + " |",
            "|---|---|" + "---|" * 10]
    for label, w, interval in STUDY:
        f = class_agreement(pipe, classifier, guidance_scale=w, per_class=20, guidance_interval=interval)
        print(label, f["agreement"], flush=True)
        rows.append(f"| {label} | {100 * f['agreement']:.1f}% | "
                    + " | ".join(f"{100 * v:.0f}" for v in f["per_class"].values()) + " |")
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        summary = run_demo(work, bench=False, progress=lambda stage, done=0, total=None: total is None and print(stage, flush=True))
        study = guidance_study(Path(work))
    cards = {n: json.loads((ZOO / f"{n}.json").read_text()) for n in ("cond_unet", "dcgan", "vae", "classifier")}
    m = summary["models"]
    d = cards["cond_unet"]["data"]
    lines = [
        "# Model cards: edgegen's bundled digit models", "",
        f"Data for all four: `{d['source']}` — 1,797 real 8x8 scans of handwritten digits (0..16 grey levels),",
        f"upsampled bilinearly to 32x32, scaled to [-1, 1]; a seeded split (seed {d['seed']}): {d['train']} images",
        f"for training, {d['test']} held out (used only to score the classifier). Trained on CPU with torch",
        f"{cards['cond_unet']['torch']} by `python benchmarks/zoo/train.py` (recipes: `benchmarks/zoo/training.py`).",
        "Quality below is measured through edgegen's runtime (ONNX, OpenVINO) by `benchmarks/zoo/cards.py`.", ""]
    lines += ["## cond_unet — class-conditional diffusion U-Net", "",
              "diffusers `UNet2DModel` (32/48/64 channels, attention at 8x8), 11 class embeddings (digits + a null",
              f"class for classifier-free guidance, label dropout {cards['cond_unet']['p_uncond']}), eps-prediction,",
              "DDPM linear betas 1e-4..0.02, T=1000, x0 prediction clipped to [-2, 2] (clip_sample_range 2: [-1, 1] breaks guidance).",
              f"Training: {cards['cond_unet']['steps']} steps, batch {cards['cond_unet']['batch']}, "
              f"{cards['cond_unet']['optimizer']} lr {cards['cond_unet']['lr']}; final loss "
              f"{cards['cond_unet']['final_loss']:.4g}; {cards['cond_unet']['seconds'] / 60:.1f} min.",
              *([f"Recommended guidance interval: sigma in ({cards['cond_unet']['guidance_interval'][0]:g}, "
                 f"{cards['cond_unet']['guidance_interval'][1]:g}] (edgegen.guidance; the runtime's default for this "
                 "artifact)."] if cards["cond_unet"].get("guidance_interval") else
                ["Guidance applies at every step (no guidance interval recorded)."]),
              "", "Classifier-free guidance, 200 samples (20 per digit), DDIM 50 steps, seed 0, FP32 ONNX Runtime;"
              " per-digit shares in %:", "", *study, "",
              f"Demo figures (8 per digit, guidance {m['digits-diffusion']['fp32']['guidance_scale']:g}): "
              f"{100 * m['digits-diffusion']['fp32']['agreement']:.1f}% FP32, "
              f"{100 * m['digits-diffusion']['int8']['agreement']:.1f}% INT8.", ""]
    results = Path(__file__).resolve().parents[1] / "results" / "steps_to_quality.json"
    if results.is_file():
        sys.path.insert(0, str(results.parents[1]))
        from steps_to_quality import table

        lines += table(json.loads(results.read_text())) + [""]
    for name, key, title in (("dcgan", "digits-dcgan", "DCGAN generator"), ("vae", "digits-vae", "convolutional VAE (decoder exported)")):
        c = cards[name]
        losses = ", ".join(f"{k} {v:.4g}" for k, v in c.items() if k.startswith("final"))
        lines += [f"## {name} — {title}", "",
                  f"Training: {c['steps']} steps, batch {c['batch']}, lr {c['lr']}; {losses}; {c['seconds'] / 60:.1f} min.",
                  f"Quality (64 samples): classifier mean confidence {m[key]['fp32']['mean_confidence']:.3f} "
                  f"(INT8 {m[key]['int8']['mean_confidence']:.3f}); classes drawn {m[key]['fp32']['classes']}.", ""]
    c = cards["classifier"]
    lines += ["## classifier — the quality metric", "",
              f"Small CNN (3 conv layers, 64-d features). Training: {c['steps']} steps, batch {c['batch']}, lr {c['lr']},"
              f" +-2 px shifts; final loss {c['final_loss']:.4g}; held-out accuracy {100 * c['test_accuracy']:.1f}%.", ""]
    (ZOO / "MODEL_CARDS.md").write_text("\n".join(lines))
    print((ZOO / "MODEL_CARDS.md").read_text())


if __name__ == "__main__":
    main()
