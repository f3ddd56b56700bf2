"""`edgegen demo`: export, quantize, run and measure the bundled models end to end (needs the export extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import progress_bar, reported, require_extras, stdout


def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the artifacts, images and summary.")] = Path("edgegen-demo"),
    steps: Annotated[int, typer.Option(help="DDIM steps for the diffusion model.")] = 50,
    guidance_scale: Annotated[float, typer.Option(help="Classifier-free guidance scale for the diffusion model (1 = no guidance).")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    bench: Annotated[bool, typer.Option(help="Also measure latency with edgegen bench.")] = True,
) -> None:
    """Export the bundled digit models (FP32 + INT8), generate, classify, measure."""
    with reported():
        require_extras("demo", "export", "openvino", "bench")
        from ..demo import run_demo

        with progress_bar() as progress:
            run_demo(out, steps=steps, seed=seed, guidance_scale=guidance_scale, bench=bench, progress=progress)
        stdout(f"demo written to {out}: grids *.png, summary.md, bench/report.html")
