"""`edgegen bench`: latency, memory and quality of artifacts, as JSON / Markdown / HTML reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..types import MemoryMode, ShapeMode
from .common import Backend, progress_bar, reported, require_extras, stdout


def bench(
    artifacts: Annotated[List[Path], typer.Argument(exists=True, file_okay=False, help="Artifact directories.")],
    backend: Annotated[Optional[List[Backend]], typer.Option(help="Backend(s) to measure (repeatable).")] = None,
    shapes: Annotated[Optional[List[ShapeMode]], typer.Option(help="OpenVINO shape mode(s), one row each (repeatable: --shapes static --shapes dynamic reports both).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Diffusion steps per image.")] = 20,
    runs: Annotated[int, typer.Option(min=1, help="Measured generations.")] = 3,
    warmup: Annotated[int, typer.Option(min=0, help="Discarded generations before measuring.")] = 1,
    num_images: Annotated[int, typer.Option(min=1, help="Images per generation.")] = 4,
    seed: Annotated[int, typer.Option(help="Noise seed (the same for every configuration).")] = 0,
    height: Annotated[Optional[int], typer.Option(help="SD / VAE image height.")] = None,
    width: Annotated[Optional[int], typer.Option(help="SD / VAE image width.")] = None,
    metric_model: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Classifier ONNX for confidence and Fréchet distance.")] = None,
    steps_to_quality: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="A steps-to-quality results JSON (benchmarks/steps_to_quality.py) to plot in the report.")] = None,
    memory: Annotated[Optional[List[MemoryMode]], typer.Option(help="Memory mode(s) to measure (repeatable): default, low.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Directory for report.json / .md / .html.")] = Path("bench-report"),
    json_only: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
) -> None:
    """Measure artifacts on each backend and precision; write report.json, report.md and report.html."""
    with reported():
        require_extras("bench", "bench")
        from ..bench.report import write_reports
        from ..bench.run import BenchOptions, bench as run_bench
        from ..bench.steps import read as read_steps
        from ..runtimes import default_backend

        steps_data = read_steps(steps_to_quality) if steps_to_quality else None  # checked before the long run
        opts = BenchOptions(backends=tuple(b.value for b in backend) if backend else (default_backend(),),
                            steps=steps, runs=runs, warmup=warmup, num_images=num_images, seed=seed, height=height,
                            width=width, metric_model=metric_model,
                            shapes=tuple(m.value for m in shapes) if shapes else ("auto",),
                            memory=tuple(m.value for m in memory) if memory else ("default",))
        if json_only:
            report = run_bench(artifacts, opts)
        else:
            with progress_bar() as progress:
                report = run_bench(artifacts, opts, progress=progress)
        paths = write_reports(report, out, steps_to_quality=steps_data)
        if json_only:
            stdout(paths["json"].read_text())
        else:
            stdout(paths["md"].read_text())
            stdout(f"reports: {paths['json']}, {paths['md']}, {paths['html']}")
