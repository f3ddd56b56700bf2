"""`edgegen quantize`: an artifact -> a new artifact with INT8 variants (no torch needed).

Also home of the INT8 options `edgegen export --int8` shares (same flags, same help panels).
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..types import Backend
from .common import progress_bar, reported, stdout

CALIBRATION = "INT8 calibration"
GATE = "INT8 quality and speed gates"

ForceInt8 = Annotated[bool, typer.Option("--force-int8", rich_help_panel=GATE,
                                         help="Keep INT8 even where it is not faster than FP32.")]
CalibrationSamples = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CALIBRATION,
                                                           help="Calibration size (images sampled / inputs drawn).")]
CalibrationPrompts = Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, rich_help_panel=CALIBRATION,
                                                            help="SD: calibration prompts, one per line.")]
CalibrationData = Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, rich_help_panel=CALIBRATION,
                                                         help="Directory of .npy/.npz calibration feeds.")]
CalibrationSampler = Annotated[Optional[str], typer.Option(rich_help_panel=CALIBRATION,
                                                 help="Diffusion: sampler of the recorded FP32 trajectory. [default: ddim; lcm for LCM U-Nets]")]
CalibrationSteps = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=CALIBRATION,
                                               help="Diffusion: steps of the recorded trajectory. [default: 20; 4 for LCM U-Nets]")]
GateSamples = Annotated[Optional[int], typer.Option(min=1, rich_help_panel=GATE,
                                                    help="Images compared by the INT8 quality gate.")]
MinPsnr = Annotated[Optional[float], typer.Option(rich_help_panel=GATE,
                                                  help="Minimum median PSNR (dB), INT8 vs FP32 on the same inputs.")]
MinSsim = Annotated[Optional[float], typer.Option(rich_help_panel=GATE, help="Minimum mean SSIM, INT8 vs FP32.")]
MaxStepError = Annotated[Optional[float], typer.Option(rich_help_panel=GATE,
                                                       help="Diffusion: maximum U-Net relative error, averaged over steps.")]


# Declared once, added to every command that quantizes (see :func:`with_int8_options`).
INT8_OPTIONS = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                for name, annotation, default in (
                    ("force_int8", ForceInt8, False), ("calibration_samples", CalibrationSamples, None),
                    ("calibration_prompts", CalibrationPrompts, None), ("calibration_data", CalibrationData, None),
                    ("calibration_sampler", CalibrationSampler, None), ("calibration_steps", CalibrationSteps, None),
                    ("gate_samples", GateSamples, None), ("min_psnr", MinPsnr, None), ("min_ssim", MinSsim, None),
                    ("max_step_error", MaxStepError, None))]


def with_int8_options(command):
    """Give a typer command the INT8 calibration and gate options, passed to it as one dict
    ``int8_flags`` (parameter name -> value), so each option is declared once for every command."""
    names = [p.name for p in INT8_OPTIONS]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, int8_flags={name: kwargs.pop(name) for name in names}, **kwargs)

    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "int8_flags"]
    wrapper.__signature__ = inspect.Signature([*own, *INT8_OPTIONS])
    return wrapper


def int8_options(backend: Backend, seed: int, flags: dict, *, force: bool = False):
    """:class:`~edgegen.calibration.int8.Int8Options` from a command's ``int8_flags``."""
    from ..calibration.int8 import Int8Options

    return Int8Options(backend=backend, seed=seed, samples=flags["calibration_samples"],
                       prompts=flags["calibration_prompts"], calibration_data=flags["calibration_data"],
                       sampler=flags["calibration_sampler"], steps=flags["calibration_steps"],
                       gate_samples=flags["gate_samples"], min_psnr=flags["min_psnr"], min_ssim=flags["min_ssim"],
                       max_step_error=flags["max_step_error"], force=flags["force_int8"] or force)


@with_int8_options
def quantize(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="FP32 artifact directory.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Artifact to write (default: replace ARTIFACT, atomically).")] = None,
    backend: Annotated[Backend, typer.Option(help="Quantizer: openvino (NNCF -> IR) or onnxruntime (QDQ ONNX, also what TensorRT builds INT8 engines from).")] = Backend.openvino,
    seed: Annotated[int, typer.Option(help="Seed of calibration; the gate uses disjoint seeds.")] = 0,
    *,
    int8_flags: dict,
) -> None:
    """Add INT8 variants to an artifact: calibrated on its FP32 trajectory, quality- and speed-gated."""
    from ..calibration.int8 import quantize as quantize_artifact

    with reported():
        options = int8_options(backend, seed, int8_flags)
        with progress_bar() as progress:
            path = quantize_artifact(artifact, out or artifact, options=options, progress=progress)
        stdout(f"wrote {path}")
