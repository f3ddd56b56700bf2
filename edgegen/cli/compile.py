"""`edgegen compile`: build an artifact's engines for this machine's GPU (TensorRT), into
``ART/engines``, where pipelines load them from.

Also home of the TensorRT options `edgegen export --backend tensorrt` shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..compile.profiles import MAX_PROMPT_WINDOWS
from ..types import Backend, Precision
from .common import parse_ints, progress_bar, reported, stdout

TENSORRT = "TensorRT"

Fp16 = Annotated[bool, typer.Option("--fp16", rich_help_panel=TENSORRT,
                                    help="Also build FP16 engines (FP32 kept for layers that overflow).")]
MinPoint = Annotated[Optional[str], typer.Option("--min", rich_help_panel=TENSORRT,
                                                 help="Smallest HEIGHT,WIDTH[,BATCH] the engines accept (pixels, images per call).")]
OptPoint = Annotated[Optional[str], typer.Option("--opt", rich_help_panel=TENSORRT,
                                                 help="HEIGHT,WIDTH[,BATCH] the engines are tuned for (default: the artifact's image size, 1 image).")]
MaxPoint = Annotated[Optional[str], typer.Option("--max", rich_help_panel=TENSORRT,
                                                 help="Largest HEIGHT,WIDTH[,BATCH] the engines accept.")]
PromptWindows = Annotated[int, typer.Option("--prompt-windows", min=1, rich_help_panel=TENSORRT,
                                            help="Most 75-token prompt windows a call may use (long prompts).")]


def profile_points(min_point: str | None, opt_point: str | None, max_point: str | None) -> dict:
    """``{"min": (H, W[, B]) | None, "opt": ..., "max": ...}`` from the ``--min/--opt/--max`` flags."""
    return {label: parse_ints(value, f"--{label}", (2, 3))
            for label, value in (("min", min_point), ("opt", opt_point), ("max", max_point))}


def precisions(fp16: bool, int8: bool) -> list[Precision]:
    """FP32 always, then FP16 and INT8 (from the QDQ variant) when asked for."""
    return [Precision.fp32] + ([Precision.fp16] if fp16 else []) + ([Precision.int8] if int8 else [])


def compile(  # noqa: A001 (the command's name)
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory.")],
    backend: Annotated[Backend, typer.Option(help="Engine builder: tensorrt (OpenVINO and ONNX Runtime compile at load).")] = Backend.tensorrt,
    fp16: Fp16 = False,
    int8: Annotated[bool, typer.Option("--int8", rich_help_panel=TENSORRT, help="Also build INT8 engines from the QDQ variants (`edgegen quantize --backend onnxruntime`).")] = False,
    min_point: MinPoint = None,
    opt_point: OptPoint = None,
    max_point: MaxPoint = None,
    prompt_windows: PromptWindows = MAX_PROMPT_WINDOWS,
) -> None:
    """Build FP32 (and FP16 / INT8) engines for every component into ART/engines."""
    from ..compile import compile as compile_artifact

    with reported():
        points = profile_points(min_point, opt_point, max_point)
        with progress_bar() as progress:
            root = compile_artifact(artifact, backend=backend, precisions=precisions(fp16, int8), progress=progress,
                                    prompt_windows=prompt_windows, **points)
        stdout(f"engines in {root}")
