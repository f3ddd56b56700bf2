"""`edgegen export`: a diffusers SD directory or a user torch module -> an artifact."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ExportError
from ..types import Backend, ModelKind
from .common import parse_ints, parse_range, progress_bar, reported, stdout
from .compile import Fp16, MaxPoint, MinPoint, OptPoint, precisions, profile_points
from .quantize import int8_options, with_int8_options


class SdModel(str, Enum):
    sd = "sd"
    sd_unet = "sd-unet"
    sd_vae_decoder = "sd-vae-decoder"
    sd_text_encoder = "sd-text-encoder"


class TimestepDtype(str, Enum):
    int64, float32 = "int64", "float32"


_SD_COMPONENTS = {SdModel.sd: ("text_encoder", "unet", "vae_decoder", "vae_encoder"), SdModel.sd_unet: ("unet",),
                  SdModel.sd_vae_decoder: ("vae_decoder",), SdModel.sd_text_encoder: ("text_encoder",)}


SOURCE = "Model source"
SHAPES = "--module: shapes and conditioning"
PARITY = "Parity gate"
TARGET = "Target backend"


@with_int8_options
def export(
    out: Annotated[Path, typer.Option("--out", rich_help_panel=SOURCE, help="Artifact directory to write (replaced atomically).")],
    model: Annotated[Optional[SdModel], typer.Option(rich_help_panel=SOURCE, help="Export a diffusers Stable Diffusion pipeline or one component of it.")] = None,
    source: Annotated[Optional[str], typer.Option("--from", rich_help_panel=SOURCE, help="Local diffusers directory or hub id (with --model).")] = None,
    tiny_vae: Annotated[Optional[str], typer.Option("--tiny-vae", rich_help_panel=SOURCE, help="With --model sd: a diffusers AutoencoderTiny directory or hub id (TAESD for SD 1.x/2.x: madebyollin/taesd), stored as a second decoder for `edgegen run --decoder tiny`.")] = None,
    module: Annotated[Optional[str], typer.Option(rich_help_panel=SOURCE, help="User model as FILE.py:CALLABLE returning a torch.nn.Module.")] = None,
    weights: Annotated[Optional[Path], typer.Option(rich_help_panel=SOURCE, help="Checkpoint passed to CALLABLE (opened weights_only first).")] = None,
    kind: Annotated[Optional[ModelKind], typer.Option(rich_help_panel=SOURCE, help="What --module is.")] = None,
    sample_shape: Annotated[Optional[str], typer.Option(rich_help_panel=SHAPES, help="unet: C,H,W of the sample.")] = None,
    timestep_dtype: Annotated[TimestepDtype, typer.Option(rich_help_panel=SHAPES, help="unet: dtype of the timestep input.")] = TimestepDtype.int64,
    scheduler_config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, rich_help_panel=SHAPES, help="unet: diffusers scheduler_config.json.")] = None,
    num_classes: Annotated[Optional[int], typer.Option(rich_help_panel=SHAPES, help="unet: class-conditional with N classes (input class_labels).")] = None,
    null_class: Annotated[Optional[int], typer.Option(rich_help_panel=SHAPES, help="unet: label of the unconditional branch for CFG (default N).")] = None,
    guidance_interval: Annotated[Optional[str], typer.Option(rich_help_panel=SHAPES, help="unet with --num-classes: LO,HI sigma range where CFG applies by default at run time (Kynkäänniemi et al. 2024; default every step).")] = None,
    latent_shape: Annotated[Optional[str], typer.Option(rich_help_panel=SHAPES, help="generator: D or D,H,W of z.")] = None,
    image_shape: Annotated[Optional[str], typer.Option(rich_help_panel=SHAPES, help="generator: C,H,W the output is reshaped to.")] = None,
    output_range: Annotated[str, typer.Option(rich_help_panel=SHAPES, help="LO,HI value range of the model's image output.")] = "-1,1",
    latent_channels: Annotated[Optional[int], typer.Option(rich_help_panel=SHAPES, help="vae-decoder: latent channels.")] = None,
    scale_factor: Annotated[int, typer.Option(rich_help_panel=SHAPES, help="vae-decoder: spatial upscale factor.")] = 8,
    scaling_factor: Annotated[float, typer.Option(rich_help_panel=SHAPES, help="vae-decoder: latents are divided by this before decoding (SD: 0.18215).")] = 1.0,
    height: Annotated[int, typer.Option(rich_help_panel=SHAPES, help="vae-decoder: default output height in pixels.")] = 256,
    width: Annotated[int, typer.Option(rich_help_panel=SHAPES, help="vae-decoder: default output width in pixels.")] = 256,
    atol: Annotated[float, typer.Option(rich_help_panel=PARITY, help="Absolute tolerance, ONNX Runtime vs PyTorch.")] = 1e-4,
    rtol: Annotated[float, typer.Option(rich_help_panel=PARITY, help="Tolerance relative to the output's peak.")] = 1e-3,
    seed: Annotated[int, typer.Option(rich_help_panel=PARITY, help="Seed of the parity-gate inputs and of calibration.")] = 0,
    int8: Annotated[bool, typer.Option("--int8", rich_help_panel=TARGET, help="Then add INT8 variants (as `edgegen quantize`: calibrated, quality- and speed-gated).")] = False,
    backend: Annotated[Backend, typer.Option(rich_help_panel=TARGET, help="openvino (NNCF INT8), onnxruntime (QDQ INT8) or tensorrt (QDQ INT8, then engines built as by `edgegen compile`).")] = Backend.openvino,
    openvino_ir: Annotated[bool, typer.Option("--openvino-ir/--no-openvino-ir", rich_help_panel=TARGET, help="Also store OpenVINO IR with FP16-stored weights beside each FP32 ONNX file (parity-gated; what OpenVINO loads, with less memory: docs/memory.md).")] = True,
    fp16: Fp16 = False,
    min_point: MinPoint = None,
    opt_point: OptPoint = None,
    max_point: MaxPoint = None,
    *,
    int8_flags: dict,
) -> None:
    """Export a model to ONNX, gated against PyTorch, as an edgegen artifact."""
    flags = dict(locals())
    with reported():
        if (model is None) == (module is None):
            raise ExportError("expected exactly one of --model (with --from) or --module (with --kind)")
        points = _profile_points(backend, min_point, opt_point, max_point)
        # CPU latency says nothing about a GPU engine: for TensorRT the QDQ model is kept.
        int8_opts = int8_options(Backend.onnxruntime if backend is Backend.tensorrt else backend, seed, int8_flags,
                                 force=backend is Backend.tensorrt) if int8 else None
        with progress_bar() as progress:
            if model is not None:
                path = _export_sd(model, source, out, flags, int8_opts, progress)
            else:
                path = _export_module(module, kind, out, flags, int8_opts, progress)
            if backend is Backend.tensorrt:
                from ..compile import compile as compile_artifact
                compile_artifact(path, precisions=precisions(fp16, int8), progress=progress, **points)
        stdout(f"wrote {path}")


def _profile_points(backend: Backend, *points: str | None) -> dict:
    parsed = profile_points(*points)
    if backend is Backend.tensorrt:
        from ..runtimes.tensorrt import device_info
        device_info()  # fails now, in one line, where TensorRT or the GPU is missing
    elif any(parsed.values()):
        raise ExportError("--min/--opt/--max shape TensorRT optimization profiles: expected --backend tensorrt")
    return parsed


def _export_sd(model: SdModel, source: str | None, out: Path, flags: dict, int8, progress) -> Path:
    if not source:
        raise ExportError("--model needs --from DIR_OR_HUB_ID")
    if flags["tiny_vae"] is not None and model is not SdModel.sd:
        raise ExportError(f"--tiny-vae: applies to --model sd (the tiny decoder sits beside the full one), "
                          f"got --model {model.value}")
    from ..export import export_stable_diffusion
    return export_stable_diffusion(source, out, components=_SD_COMPONENTS[model], atol=flags["atol"],
                                   rtol=flags["rtol"], seed=flags["seed"], int8=int8, tiny_vae=flags["tiny_vae"],
                                   openvino_ir=flags["openvino_ir"],
                                   progress=progress)


def _export_module(module: str, kind: ModelKind | None, out: Path, flags: dict, int8, progress) -> Path:
    if kind is None:
        raise ExportError("--module needs --kind unet|generator|vae-decoder")
    if flags["tiny_vae"] is not None:
        raise ExportError(f"--tiny-vae: applies to --model sd, got --module {module}")
    from ..export import ModuleExportOptions, export_module
    interval = flags["guidance_interval"]
    options = ModuleExportOptions(
        sample_shape=parse_ints(flags["sample_shape"], "--sample-shape", (3,)),
        timestep_dtype=flags["timestep_dtype"].value, scheduler_config=flags["scheduler_config"],
        latent_shape=parse_ints(flags["latent_shape"], "--latent-shape", (1, 3)),
        image_shape=parse_ints(flags["image_shape"], "--image-shape", (3,)),
        latent_channels=flags["latent_channels"], scale_factor=flags["scale_factor"],
        scaling_factor=flags["scaling_factor"], output_range=parse_range(flags["output_range"], "--output-range"),
        height=flags["height"], width=flags["width"], num_classes=flags["num_classes"], null_class=flags["null_class"],
        guidance_interval=parse_range(interval, "--guidance-interval") if interval else None)
    return export_module(module, out, kind=kind.value, weights=flags["weights"], options=options, atol=flags["atol"],
                         rtol=flags["rtol"], seed=flags["seed"], int8=int8, openvino_ir=flags["openvino_ir"],
                         progress=progress)


