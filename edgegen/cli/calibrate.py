"""`edgegen calibrate`: record calibration feeds from an artifact's FP32 trajectory (no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import Backend, progress_bar, reported, stdout


def calibrate(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for <component>/feed-NNNNN.npz files.")],
    samples: Annotated[int, typer.Option(min=1, help="Images sampled (diffusion) or inputs drawn.")] = 8,
    sampler: Annotated[str, typer.Option(help="Diffusion: sampler of the recorded trajectory.")] = "ddim",
    steps: Annotated[int, typer.Option(min=1, help="Diffusion: steps of the recorded trajectory.")] = 20,
    guidance_scale: Annotated[float, typer.Option(help="SD: CFG scale (both branches are recorded).")] = 7.5,
    prompts: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="SD: prompts, one per line.")] = None,
    seed: Annotated[int, typer.Option(help="First seed; sample i uses seed + i.")] = 0,
    backend: Annotated[Optional[Backend], typer.Option(help="Engine backend for the FP32 run.")] = None,
) -> None:
    """Record the feeds every component sees along the FP32 pipeline, for `export --calibration-data`."""
    from ..artifact import Artifact
    from ..calibration.int8 import Int8Options, calibration_feeds
    from ..calibration.record import save_feeds_dir

    with reported():
        art = Artifact.load(artifact)
        opts = Int8Options(backend=backend.value if backend else "openvino", seed=seed, samples=samples,
                           prompts=prompts, sampler=sampler, steps=steps, guidance_scale=guidance_scale)
        with progress_bar() as progress:
            feeds = calibration_feeds(art, opts.resolved(art.family, lcm=art.spec.guidance_embedding is not None), progress=progress)
        save_feeds_dir(feeds, out)
        stdout("recorded " + ", ".join(f"{len(v)} {k} feeds" for k, v in feeds.items()) + f" to {out}")
