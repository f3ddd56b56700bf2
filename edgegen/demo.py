"""`edgegen demo`: the whole flow on a model built locally, with nothing downloaded.

Builds a small random-init Stable Diffusion pipeline with diffusers (needs the ``export``
extra), exports it with the parity gate, and generates images with the numpy runtime on
every installed CPU backend. The weights are random, so the images are noise: the demo shows
the flow and the timings, not image quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from .images import grid, save_png


def run_demo(out: str | Path, *, steps: int = 10, seed: int = 0,
             progress: Callable[[str], None] = print) -> dict:
    """Build, export and run; returns a summary (also written to ``out/summary.json``)."""
    from .export import export_stable_diffusion
    from .export.random_sd import build_random_sd
    from .pipelines import Pipeline
    from .runtimes import available_backends

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source, art = out / "random-sd-source", out / "artifacts" / "random-sd"
    progress("building a random-init Stable Diffusion pipeline (diffusers, no download)")
    build_random_sd(source, "tiny", seed=seed)
    progress("exporting to ONNX with the PyTorch parity gate")
    export_stable_diffusion(source, art, progress=progress)
    summary = {"artifact": str(art), "steps": steps, "backends": {}}
    for backend in [b for b in available_backends() if b in ("openvino", "onnxruntime")]:
        pipe = Pipeline.load(art, backend=backend)
        result = pipe("a lighthouse at dusk", num_inference_steps=steps, num_images=4, seed=seed, height=64, width=64)
        result.save(out / "images" / backend)
        save_png(out / f"grid-{backend}.png", grid(result.uint8(), 4), {"note": "random weights: noise"})
        t = result.timings
        summary["backends"][backend] = {"seconds": t["total_s"], "outside_share": t["outside_s"] / t["total_s"],
                                        "engines": t["engines"]}
        progress(f"{backend}: 4 images in {t['total_s']:.2f} s, {100 * t['outside_s'] / t['total_s']:.2f}% "
                 f"outside engines -> {out / f'grid-{backend}.png'}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
