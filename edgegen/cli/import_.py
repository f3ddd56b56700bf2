"""`edgegen import`: an optimum Stable Diffusion export (ONNX or OpenVINO IR) -> an artifact, without torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import progress_bar, reported, stdout


def import_(
    source: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Directory from `optimum-cli export onnx --task text-to-image` or `optimum-cli export openvino` (FP32 or --weight-format int8).")],
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write (replaced atomically).")],
    atol: Annotated[float, typer.Option(help="Parity gate: max abs error, imported file vs optimum's on a seeded input.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of the parity-gate inputs.")] = 0,
) -> None:
    """Import an optimum Stable Diffusion export as an edgegen artifact (never imports torch)."""
    from ..importers import import_optimum

    with reported():
        with progress_bar() as bar:
            path = import_optimum(source, out, atol=atol, seed=seed, progress=bar)
        stdout(f"wrote {path}")
