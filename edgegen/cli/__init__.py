"""The `edgegen` command line (typer). One module per command; each parses, calls one library
function and prints the result. Errors print one line and exit 1; ``--debug`` shows tracebacks."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .common import state
from .bench import bench
from .calibrate import calibrate
from .compile import compile
from .demo import demo
from .export import export
from .import_ import import_
from .quantize import quantize
from .run import run
from .serve import serve

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export, quantize and run image generators on edge engines.")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
          version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    state["debug"] = debug
    if version:
        typer.echo(__version__)
        raise typer.Exit()


app.command(help="Export a model to ONNX, gated against PyTorch, as an edgegen artifact.")(export)
app.command(help="Add INT8 variants to an artifact (calibrated, quality- and speed-gated; no torch).")(quantize)
app.command(help="Build an artifact's TensorRT engines for this GPU into ART/engines (pipelines only load them).")(compile)
app.command(name="import", help="Import an optimum Stable Diffusion export (ONNX or OpenVINO IR) as an artifact, torch-free.")(import_)
app.command(help="Generate images from an artifact (numpy runtime; never imports torch).")(run)
app.command(help="Measure latency, memory and quality of artifacts; write JSON / Markdown / HTML reports.")(bench)
app.command(help="Record calibration feeds from an artifact's FP32 trajectory.")(calibrate)
app.command(help="Export, quantize, run and measure the bundled digit models (needs the export extra).")(demo)
app.command(help="Serve artifacts with an OpenAI-compatible images API on Ray Serve (needs the serve extra).")(serve)


def main() -> None:
    app()
