"""`edgegen demo`: export and run a locally built model end to end (needs the export extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import progress_printer, reported, stdout


def demo(
    out: Annotated[Path, typer.Option("--out", help="Directory for the artifacts, images and summary.")] = Path("edgegen-demo"),
    steps: Annotated[int, typer.Option(help="Sampling steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for weights and noise.")] = 0,
) -> None:
    """Build a model locally, export it, run it on every installed CPU backend."""
    from ..demo import run_demo

    with reported():
        run_demo(out, steps=steps, seed=seed, progress=progress_printer())
        stdout(f"demo written to {out} (random weights: the images are noise; see README to use a real model)")
