"""The `edgegen` command line (typer). One module per command; each parses, calls one library
function and prints the result. Errors print one line and exit 1; ``--debug`` shows tracebacks;
usage errors exit 2, Ctrl-C 130 (see :mod:`edgegen.cli.common`)."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .. import __version__
from .common import EXIT_INTERRUPTED, describe, error, state
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


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(ctx: typer.Context,
          debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
          version: Annotated[Optional[bool], typer.Option("--version", help="Print the version and exit.",
                                                          callback=_print_version, is_eager=True)] = None) -> None:
    state["debug"] = debug
    state["command"] = ctx.invoked_subcommand


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
    """The console script: runs the app and turns whatever escapes a command into its exit status.

    Click's usage errors print as click writes them (plain text, exit 2), not in a rich panel,
    so a piped log is never boxed or wrapped.
    """
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        exc.show()
        code = exc.exit_code
    except typer.Abort:
        error("interrupted")
        code = EXIT_INTERRUPTED
    except (Exception, KeyboardInterrupt) as exc:
        if state["debug"]:
            raise
        message, code = describe(exc)
        error(message)
    sys.exit(code if isinstance(code, int) else 0)
