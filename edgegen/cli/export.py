"""`edgegen export`: a diffusers SD directory or a user torch module -> an artifact."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ExportError
from .common import parse_ints, parse_range, progress_printer, reported, stdout


class SdModel(str, Enum):
    sd = "sd"
    sd_unet = "sd-unet"
    sd_vae_decoder = "sd-vae-decoder"
    sd_text_encoder = "sd-text-encoder"


class ModuleKind(str, Enum):
    unet = "unet"
    generator = "generator"
    vae_decoder = "vae-decoder"


class QuantBackend(str, Enum):
    openvino = "openvino"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


class TimestepDtype(str, Enum):
    int64 = "int64"
    float32 = "float32"


_SD_COMPONENTS = {SdModel.sd: ("text_encoder", "unet", "vae_decoder"), SdModel.sd_unet: ("unet",),
                  SdModel.sd_vae_decoder: ("vae_decoder",), SdModel.sd_text_encoder: ("text_encoder",)}


def export(
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write (replaced atomically).")],
    model: Annotated[Optional[SdModel], typer.Option(help="Export a diffusers Stable Diffusion pipeline or one component of it.")] = None,
    source: Annotated[Optional[str], typer.Option("--from", help="Local diffusers directory or hub id (with --model).")] = None,
    module: Annotated[Optional[str], typer.Option(help="User model as FILE.py:CALLABLE returning a torch.nn.Module.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint passed to CALLABLE (opened weights_only first).")] = None,
    kind: Annotated[Optional[ModuleKind], typer.Option(help="What --module is.")] = None,
    sample_shape: Annotated[Optional[str], typer.Option(help="unet: C,H,W of the sample.")] = None,
    timestep_dtype: Annotated[TimestepDtype, typer.Option(help="unet: dtype of the timestep input.")] = TimestepDtype.int64,
    scheduler_config: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="unet: diffusers scheduler_config.json.")] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="unet: class-conditional with N classes (input class_labels).")] = None,
    null_class: Annotated[Optional[int], typer.Option(help="unet: label of the unconditional branch for CFG (default N).")] = None,
    guidance_interval: Annotated[Optional[str], typer.Option(help="unet with --num-classes: LO,HI sigma range where CFG applies by default at run time (Kynkäänniemi et al. 2024; default every step).")] = None,
    latent_shape: Annotated[Optional[str], typer.Option(help="generator: D or D,H,W of z.")] = None,
    image_shape: Annotated[Optional[str], typer.Option(help="generator: C,H,W the output is reshaped to.")] = None,
    output_range: Annotated[str, typer.Option(help="LO,HI value range of the model's image output.")] = "-1,1",
    latent_channels: Annotated[Optional[int], typer.Option(help="vae-decoder: latent channels.")] = None,
    scale_factor: Annotated[int, typer.Option(help="vae-decoder: spatial upscale factor.")] = 8,
    scaling_factor: Annotated[float, typer.Option(help="vae-decoder: latents are divided by this before decoding (SD: 0.18215).")] = 1.0,
    height: Annotated[int, typer.Option(help="vae-decoder: default output height in pixels.")] = 256,
    width: Annotated[int, typer.Option(help="vae-decoder: default output width in pixels.")] = 256,
    atol: Annotated[float, typer.Option(help="Parity gate: absolute tolerance.")] = 1e-4,
    rtol: Annotated[float, typer.Option(help="Parity gate: tolerance relative to the output's peak.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the parity-gate inputs and of calibration.")] = 0,
    int8: Annotated[bool, typer.Option("--int8", help="Add INT8 variants (calibrated, quality- and speed-gated).")] = False,
    backend: Annotated[QuantBackend, typer.Option(help="Target: openvino (NNCF INT8), onnxruntime (QDQ INT8) or tensorrt (engines built from the ONNX / QDQ ONNX).")] = QuantBackend.openvino,
    fp16: Annotated[bool, typer.Option("--fp16", help="tensorrt: build an FP16 engine (FP32 kept for layers that overflow).")] = False,
    calibration_samples: Annotated[Optional[int], typer.Option(min=1, help="Calibration size (images sampled / inputs drawn).")] = None,
    calibration_prompts: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="SD: calibration prompts, one per line.")] = None,
    calibration_data: Annotated[Optional[Path], typer.Option(exists=True, file_okay=False, help="Directory of .npy/.npz calibration feeds.")] = None,
    calibration_sampler: Annotated[str, typer.Option(help="Diffusion: sampler of the recorded FP32 trajectory.")] = "ddim",
    calibration_steps: Annotated[int, typer.Option(min=1, help="Diffusion: steps of the recorded trajectory.")] = 20,
    gate_samples: Annotated[Optional[int], typer.Option(min=1, help="Images compared by the INT8 quality gate.")] = None,
    min_psnr: Annotated[Optional[float], typer.Option(help="Quality gate: minimum median PSNR (dB) INT8 vs FP32.")] = None,
    min_ssim: Annotated[Optional[float], typer.Option(help="Quality gate: minimum mean SSIM INT8 vs FP32.")] = None,
    max_step_error: Annotated[Optional[float], typer.Option(help="Quality gate: maximum U-Net relative error, averaged over steps.")] = None,
    force_int8: Annotated[bool, typer.Option("--force-int8", help="Keep INT8 even where it is not faster than FP32.")] = False,
    min_point: Annotated[Optional[str], typer.Option("--min", help="tensorrt: smallest HEIGHT,WIDTH[,BATCH] the engines accept (pixels, images per call).")] = None,
    opt_point: Annotated[Optional[str], typer.Option("--opt", help="tensorrt: HEIGHT,WIDTH[,BATCH] the engines are tuned for (default: the artifact's image size, 1 image).")] = None,
    max_point: Annotated[Optional[str], typer.Option("--max", help="tensorrt: largest HEIGHT,WIDTH[,BATCH] the engines accept.")] = None,
) -> None:
    """Export a model to ONNX, gated against PyTorch, as an edgegen artifact."""
    with reported():
        if (model is None) == (module is None):
            raise ExportError("expected exactly one of --model (with --from) or --module (with --kind)")
        say = progress_printer()
        if backend is QuantBackend.tensorrt:
            from ..runtimes.tensorrt import device_info
            device_info()  # fails now, in one line, where TensorRT or the GPU is missing
        points = {label: parse_ints(value, f"--{label}", (2, 3)) for label, value in
                  (("min", min_point), ("opt", opt_point), ("max", max_point))}
        if any(points.values()) and backend is not QuantBackend.tensorrt:
            raise ExportError("--min/--opt/--max shape TensorRT optimization profiles: expected --backend tensorrt")
        int8_options = None
        if int8:
            from ..calibration.int8 import Int8Options
            int8_options = Int8Options(
                backend="onnxruntime" if backend is QuantBackend.tensorrt else backend.value, seed=seed, samples=calibration_samples, prompts=calibration_prompts,
                calibration_data=calibration_data, sampler=calibration_sampler, steps=calibration_steps,
                gate_samples=gate_samples, min_psnr=min_psnr, min_ssim=min_ssim, max_step_error=max_step_error,
                # CPU latency says nothing about a GPU engine: TensorRT keeps the QDQ model.
                force=force_int8 or backend is QuantBackend.tensorrt)
        if model is not None:
            if not source:
                raise ExportError("--model needs --from DIR_OR_HUB_ID")
            from ..export import export_stable_diffusion
            path = export_stable_diffusion(source, out, components=_SD_COMPONENTS[model], atol=atol, rtol=rtol,
                                           seed=seed, int8=int8_options, progress=say)
        else:
            if kind is None:
                raise ExportError("--module needs --kind unet|generator|vae-decoder")
            from ..export import ModuleExportOptions, export_module
            options = ModuleExportOptions(
                sample_shape=parse_ints(sample_shape, "--sample-shape", (3,)),
                timestep_dtype=timestep_dtype.value, scheduler_config=scheduler_config,
                latent_shape=parse_ints(latent_shape, "--latent-shape", (1, 3)),
                image_shape=parse_ints(image_shape, "--image-shape", (3,)),
                latent_channels=latent_channels, scale_factor=scale_factor, scaling_factor=scaling_factor,
                output_range=parse_range(output_range, "--output-range"), height=height, width=width,
                num_classes=num_classes, null_class=null_class,
                guidance_interval=parse_range(guidance_interval, "--guidance-interval") if guidance_interval else None)
            path = export_module(module, out, kind=kind.value, weights=weights, options=options, atol=atol,
                                 rtol=rtol, seed=seed, int8=int8_options, progress=say)
        if backend is QuantBackend.tensorrt:
            from ..artifact import Artifact
            from ..pipelines.base import load_components, save_tensorrt_profile
            art = Artifact.load(path)
            save_tensorrt_profile(art, **points)
            for precision in ["fp32"] + (["fp16"] if fp16 else []) + (["int8"] if int8 else []):
                load_components(art, list(art.manifest["components"]), backend="tensorrt", precision=precision)
                say(f"tensorrt: {precision} engines cached in {path / 'engines'}")
        stdout(f"wrote {path}")
