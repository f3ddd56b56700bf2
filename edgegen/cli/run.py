"""`edgegen run`: generate images from an artifact with the numpy runtime (never imports torch)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from ..errors import EdgegenError
from .common import Backend, console, parse_range, reported, stdout


class SamplerName(str, Enum):
    ddpm = "ddpm"
    ddim = "ddim"
    euler = "euler"
    euler_a = "euler-a"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


def _load_npy(path: Optional[Path], flag: str) -> Optional[np.ndarray]:
    if path is None:
        return None
    try:
        return np.load(path)
    except (OSError, ValueError) as exc:
        raise EdgegenError(f"{flag}: expected a .npy array file, could not read '{path}' ({exc})") from exc


def run(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory from `edgegen export`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs.")],
    prompt: Annotated[Optional[str], typer.Option(help="Text prompt (Stable Diffusion), or a class name (class-conditional U-Net).")] = None,
    class_label: Annotated[Optional[int], typer.Option(help="Class label (class-conditional U-Net); default: cycle through the classes.")] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(help="Negative prompt (Stable Diffusion).")] = None,
    steps: Annotated[int, typer.Option(help="Number of sampling steps (diffusion).")] = 50,
    sampler: Annotated[Optional[SamplerName], typer.Option(help="Sampler; default from the scheduler config.")] = None,
    eta: Annotated[float, typer.Option(help="DDIM eta (0 = deterministic); euler-a uses 1 when 0.")] = 0.0,
    guidance_scale: Annotated[float, typer.Option(help="Classifier-free guidance scale (1 = off).")] = 7.5,
    guidance_interval: Annotated[Optional[str], typer.Option(help="Class-conditional U-Nets: LO,HI sigma range where guidance applies, or 'all'; default the artifact's.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise and sampler noise.")] = 0,
    num_images: Annotated[int, typer.Option(min=1, help="Images to generate.")] = 1,
    height: Annotated[Optional[int], typer.Option(help="Image height in pixels (SD, VAE decoder).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width in pixels (SD, VAE decoder).")] = None,
    init_noise: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="(B,C,h,w) float32 .npy initial noise, N(0,I).")] = None,
    latents: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Latents / z .npy to decode (generator, vae-decoder).")] = None,
    backend: Annotated[Optional[Backend], typer.Option(help="Engine backend; default OpenVINO when installed.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Compute precision; default as stored (bf16: OpenVINO on fp32 files).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per engine batch.")] = 64,
    device: Annotated[Optional[str], typer.Option(help="Backend device: CPU (OpenVINO); cpu, cuda or tensorrt (ONNX Runtime execution provider).")] = None,
    prompts: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="With --ray: a file of prompts (class-conditional models: labels), one request per line, seeds --seed + line number.")] = None,
    jobs: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="With --ray: a JSONL file of requests (the fields of POST /v1/images/generations).")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run --prompts / --jobs as a resumable Ray job: PNGs plus index.jsonl in --out (needs the serve extra).")] = False,
    address: Annotated[Optional[str], typer.Option(help="With --ray: the Ray cluster to join (host:port or 'auto'); default: a local one.")] = None,
) -> None:
    """Generate images from an artifact and write them as PNGs."""
    from rich.progress import Progress

    from ..pipelines import DecoderPipeline, Pipeline

    if ray or prompts or jobs:
        _ray_job(artifact, out, prompts, jobs, address, backend, precision, ray, dict(
            prompt=prompt, negative_prompt=negative_prompt, steps=steps, sampler=sampler.value if sampler else None,
            guidance_scale=guidance_scale, seed=seed, n=num_images, class_label=class_label,
            size=f"{width}x{height}" if width and height else None))
        return
    with reported():
        interval = None if guidance_interval in (None, "all") else parse_range(guidance_interval, "--guidance-interval")
        pipe = Pipeline.load(artifact, backend=backend.value if backend else None,
                             precision=precision.value if precision else None, device=device)
        written, total, engine = [], 0.0, 0.0
        if isinstance(pipe, DecoderPipeline):
            given = _load_npy(latents, "--latents")
            result = pipe(num_images=num_images, seed=seed, latents=given, height=height, width=width)
            results = [result]
        else:
            noise = _load_npy(init_noise, "--init-noise")
            batches = [(0, noise.shape[0])] if noise is not None else [
                (i, min(batch_size, num_images - i)) for i in range(0, num_images, batch_size)]
            results = []
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("sampling", total=steps * len(batches))
                for start, count in batches:
                    results.append(pipe(prompt, negative_prompt=negative_prompt, num_inference_steps=steps,
                                        sampler=sampler.value if sampler else None, eta=eta,
                                        guidance_scale=guidance_scale, seed=seed + start, num_images=count,
                                        height=height, width=width, init_noise=noise,
                                        **({"class_label": class_label} if class_label is not None else {}),
                                        **({"guidance_interval": interval} if guidance_interval else {}),
                                        callback=lambda i, x: bar.advance(task)))
        for index, result in enumerate(results):
            written += result.save(out, prefix=f"image-{index:03d}")
            total += result.timings["total_s"]
            engine += result.timings["engine_s"]
        stdout(f"wrote {len(written)} image(s) to {out} in {total:.2f} s "
               f"({100 * (total - engine) / max(total, 1e-9):.1f}% outside engines, backend {pipe.backend}, "
               f"precision {pipe.precision})")


def _ray_job(artifact, out, prompts, jobs, address, backend, precision, use_ray, defaults) -> None:
    """The --ray branch: one call into edgegen.serve.jobs (the serve extra)."""
    from ..serve.jobs import job_from_cli
    from .common import progress_bar

    with reported(), progress_bar() as progress:
        summary = job_from_cli(artifact, out, prompts=prompts, jobs=jobs, address=address,
                               backend=backend.value if backend else None,
                               precision=precision.value if precision else None, defaults=defaults, use_ray=use_ray,
                               progress=progress)
    stdout(summary.line())
