"""`edgegen run`: generate images from an artifact with the numpy runtime (never imports torch).

Every option is checked against the artifact before an engine is loaded (``_check_*`` below;
what is refused and why is in ``docs/validation.md``). Messages name the flag as typed.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Optional

import numpy as np
import typer

from ..errors import EdgegenError, EngineInputError, InputError, NonFiniteError
from ..types import Decoder, MemoryMode, Sampler, ShapeMode, SigmaSchedule
from .common import Backend, parse_range, progress_bar, reported, stdout

MAX_IMAGES = 100_000  # per run; more is a typo (1e12 images would fill the disk long before it ends)
DEFAULTS = {"steps": 50, "guidance_scale": 7.5}
# LatentConsistencyModelPipeline's defaults: 4 steps with the lcm sampler, 8.5 for U-Nets taking guidance as an input.
LCM_DEFAULTS = {"steps": 4, "guidance_scale": 8.5}


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    int8 = "int8"


def run(
    artifact: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Artifact directory from `edgegen export`.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs.")],
    prompt: Annotated[Optional[str], typer.Option(help="Text prompt (Stable Diffusion; required, '' for an unconditional sample), or a class name (class-conditional U-Net).")] = None,
    class_label: Annotated[Optional[int], typer.Option(help="Class label (class-conditional U-Net); default: cycle through the classes.")] = None,
    negative_prompt: Annotated[Optional[str], typer.Option(help="Negative prompt (Stable Diffusion).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Number of sampling steps (diffusion). [default: 50; 4 with the lcm sampler]")] = None,
    sampler: Annotated[Optional[Sampler], typer.Option(help="Sampler; default from the scheduler config.")] = None,
    sigmas: Annotated[Optional[SigmaSchedule], typer.Option(help="Noise levels for euler, euler-a, dpmpp-2m; default the scheduler config's.")] = None,
    eta: Annotated[Optional[float], typer.Option(help="Noise share >= 0 of ddim (default 0, deterministic) and euler-a (default 1).")] = None,
    guidance_scale: Annotated[Optional[float], typer.Option(help="Classifier-free guidance scale (1 = off); LCM-distilled U-Nets take it as an input. [default: 7.5; 8.5 for LCM-distilled U-Nets]")] = None,
    guidance_interval: Annotated[Optional[str], typer.Option(help="LO,HI sigma range where guidance applies, or 'all'; default the artifact's, else all.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise and sampler noise.")] = 0,
    num_images: Annotated[Optional[int], typer.Option(help=f"Images to generate (1..{MAX_IMAGES}); default 1, or the batch of --init-noise / --latents.")] = None,
    height: Annotated[Optional[int], typer.Option(help="Image height in pixels (SD, VAE decoder).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Image width in pixels (SD, VAE decoder).")] = None,
    init_noise: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="(B,C,h,w) float32 .npy initial noise, N(0,I).")] = None,
    latents: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="Latents / z .npy to decode (generator, vae-decoder).")] = None,
    backend: Annotated[Optional[Backend], typer.Option(help="Engine backend; default OpenVINO when installed.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Compute precision; default as stored (bf16: OpenVINO on fp32 files).")] = None,
    init_image: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="img2img (Stable Diffusion): start from this image (PNG, JPEG, ... read with Pillow); its size is the output's.")] = None,
    strength: Annotated[Optional[float], typer.Option(help="img2img: how much of the schedule runs, in (0, 1]; 1 ignores the image's content. [default: 0.8]")] = None,
    tile_size: Annotated[Optional[int], typer.Option(help="Decode in tiles of N x N pixels (a positive multiple of the VAE's scale factor; overlaps blended), bounding the decoder's memory by the tile (SD, VAE decoder).")] = None,
    decoder: Annotated[Optional[Decoder], typer.Option(help="VAE decoder (SD): full, or tiny (TAESD; the artifact needs `edgegen export --tiny-vae DIR`). [default: full]")] = None,
    preview_every: Annotated[Optional[int], typer.Option(help="Write preview-NNNN-stepSS.png of the x0 estimate every N steps (SD; a linear latent->RGB projection, no decoder call).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per engine batch.")] = 64,
    device: Annotated[Optional[str], typer.Option(help="Backend device: CPU (OpenVINO); cpu, cuda or tensorrt (ONNX Runtime execution provider).")] = None,
    shapes: Annotated[ShapeMode, typer.Option(help="OpenVINO: compile each call's exact shapes (static), once for any (dynamic), or as measured faster per component (auto); see docs/memory.md.")] = ShapeMode.auto,
    memory: Annotated[MemoryMode, typer.Option(help="default: every component loaded at once (fastest); low: each loaded for its stage and freed after (peak = the largest stage), every batch loads again.")] = MemoryMode.default,
    memory_budget: Annotated[Optional[float], typer.Option(min=0.01, help="GiB of process memory a VAE decode may reach before it is tiled automatically; default: low mode the U-Net stage's peak, default mode what the machine has available.")] = None,
    prompts: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="With --ray: a file of prompts (class-conditional models: labels), one request per line, seeds --seed + line number.")] = None,
    jobs: Annotated[Optional[Path], typer.Option(exists=True, dir_okay=False, help="With --ray: a JSONL file of requests (the fields of POST /v1/images/generations).")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Run --prompts / --jobs as a resumable Ray job: PNGs plus index.jsonl in --out (needs the serve extra).")] = False,
    address: Annotated[Optional[str], typer.Option(help="With --ray: the Ray cluster to join (host:port or 'auto'); default: a local one.")] = None,
) -> None:
    """Generate images from an artifact and write them as PNGs."""
    o = SimpleNamespace(**locals())  # the options as typed, for the checks and the pipeline call below
    o.backend_name = backend.value if backend else None
    o.precision_name = precision.value if precision else None
    if ray or prompts or jobs:
        _refuse_in_ray_job(decoder=decoder, preview_every=preview_every, init_image=init_image, strength=strength)
        _ray_job(artifact, out, prompts, jobs, address, backend, precision, ray, dict(
            prompt=prompt, negative_prompt=negative_prompt, steps=steps or DEFAULTS["steps"],
            sampler=sampler.value if sampler else None, sigmas=sigmas.value if sigmas else None,
            guidance_scale=DEFAULTS["guidance_scale"] if guidance_scale is None else guidance_scale, seed=seed,
            n=num_images or 1, class_label=class_label, size=f"{width}x{height}" if width and height else None))
        return
    with reported():
        from ..artifact import Artifact
        from ..pipelines import DecoderPipeline, Pipeline

        array, interval = _checked(Artifact.load(artifact), o)
        pipe = Pipeline.load(artifact, backend=o.backend_name, precision=o.precision_name, device=device,
                             shapes=shapes.value, memory=memory.value,
                             memory_budget=None if memory_budget is None else int(memory_budget * 2**30))
        batches = [(0, array.shape[0])] if array is not None else [
            (i, min(batch_size, o.num_images - i)) for i in range(0, o.num_images, batch_size)]
        preview = _previewer(pipe, o.preview_every, out) if o.preview_every else None
        written, total, engine, info = _generate(_caller(pipe, o, array, interval), batches, o.steps, out,
                                           diffusion=not isinstance(pipe, DecoderPipeline), preview=preview)
        stdout(f"wrote {len(written)} image(s) to {out} in {total:.2f} s "
               f"({100 * (total - engine) / max(total, 1e-9):.1f}% outside engines, backend {pipe.backend}, "
               f"precision {pipe.precision})")
        stdout(_memory_line(pipe, info))


def _memory_line(pipe, info: dict) -> str:
    """The run's peak memory line, and the tiling an automatic choice made (from the last batch's info)."""
    from ..pipelines.base import memory_report

    line = f"{memory_report(pipe.engines).line()}; memory mode {pipe.memory.value}"
    if info.get("tile_size") and info.get("tile_reason") != "given":
        line += f"\ndecoded in tiles of {info['tile_size']} px ({info['tile_reason']})"
    return line


def _checked(art, o: SimpleNamespace) -> tuple[Optional[np.ndarray], Optional[tuple[float, float]]]:
    """Check every option against the artifact before an engine loads (sets ``o.num_images``).

    Returns (the --latents / --init-noise array or None, the guidance interval or None).
    Raises InputError naming the flag.
    """
    given = {"--prompt": o.prompt, "--negative-prompt": o.negative_prompt, "--class-label": o.class_label,
             "--steps": o.steps, "--sampler": o.sampler, "--sigmas": o.sigmas, "--eta": o.eta,
             "--guidance-scale": o.guidance_scale, "--guidance-interval": o.guidance_interval,
             "--init-noise": o.init_noise, "--latents": o.latents, "--height": o.height, "--width": o.width,
             "--tile-size": o.tile_size, "--decoder": o.decoder.value if o.decoder else None,
             "--preview-every": o.preview_every, "--init-image": o.init_image, "--strength": o.strength}
    _check_applies(art, {flag: value for flag, value in given.items() if value is not None})
    _check_decoder(art, o.decoder, o.preview_every)
    _check_init_image(art, o)
    _check_values(art, out=o.out, prompt=o.prompt, negative_prompt=o.negative_prompt, class_label=o.class_label,
                  steps=o.steps, eta=o.eta, guidance_scale=o.guidance_scale, seed=o.seed, num_images=o.num_images,
                  precision=o.precision_name, backend=o.backend_name)
    size = _check_size(art, o.height, o.width)
    _check_tile(art, o.tile_size)
    flag = "--latents" if o.latents is not None else "--init-noise"
    array = _load_array(o.latents if o.latents is not None else o.init_noise, flag)
    if array is not None:
        _check_array(art, array, flag, size, sized=o.height is not None or o.width is not None)
        o.num_images = _check_batch(array, flag, o.num_images)
        if art.family == "vae-decoder" and o.height is None and o.width is None:
            f = art.spec.latent.scale_factor or 8
            size = (array.shape[2] * f, array.shape[3] * f)  # the latents set the size
    o.num_images = o.num_images or 1
    _fill_defaults(art, o)
    batch = array.shape[0] if array is not None else min(o.batch_size, o.num_images)
    _check_memory(art, size, batch, o.backend_name, o.tile_size, o.memory, tiny=o.decoder is Decoder.tiny)
    return array, _check_interval(o.guidance_interval)


def _fill_defaults(art, o: SimpleNamespace) -> None:
    """``--steps`` / ``--guidance-scale`` left out: LCM's where it applies (:data:`LCM_DEFAULTS`), else DEFAULTS."""
    from ..pipelines.diffusion import default_sampler

    diffusion = art.family in ("stable-diffusion", "unet")
    sampler = o.sampler.value if o.sampler else default_sampler(art.spec.scheduler_class) if diffusion else None
    o.steps = o.steps or (LCM_DEFAULTS if sampler == "lcm" else DEFAULTS)["steps"]
    if o.guidance_scale is None:
        embedded = diffusion and art.spec.guidance_embedding is not None
        o.guidance_scale = (LCM_DEFAULTS if embedded else DEFAULTS)["guidance_scale"]


def _caller(pipe, o: SimpleNamespace, array: Optional[np.ndarray], interval):
    """``call(start, count, callback) -> Generation``: one batch of the run through the pipeline."""
    from ..pipelines import DecoderPipeline

    if isinstance(pipe, DecoderPipeline):
        return lambda start, count, callback: pipe(num_images=count, seed=o.seed + start, latents=array,
                                                   height=o.height, width=o.width, tile_size=o.tile_size)
    prompt, class_label = _condition(pipe, o.prompt, o.class_label)
    options = dict(negative_prompt=o.negative_prompt, num_inference_steps=o.steps or DEFAULTS["steps"],
                   sampler=o.sampler, sigmas=o.sigmas, eta=o.eta, class_label=class_label,
                   guidance_scale=DEFAULTS["guidance_scale"] if o.guidance_scale is None else o.guidance_scale,
                   height=o.height, width=o.width, init_noise=array, tile_size=o.tile_size,
                   **({"init_image": o.init_image, "strength": o.strength} if o.init_image is not None else {}),
                   **({"guidance_interval": interval} if o.guidance_interval else {}),
                   **({"decoder": o.decoder.value} if o.decoder else {}))
    return lambda start, count, callback: pipe(prompt, seed=o.seed + start, num_images=count, callback=callback,
                                               **options)


def _previewer(pipe, every: int, out: Path):
    """``preview(step, x0, first)``: every ``every`` steps, ``pipe.preview(x0)`` written as
    ``preview-NNNN-stepSS.png`` (NNNN the image's number as its final PNG, SS the steps done)."""
    from ..preview import save_previews

    def preview(step: int, x0: np.ndarray, first: int) -> None:
        if (step + 1) % every == 0:
            save_previews(out, pipe.preview(x0), step + 1, start=first)

    return preview


def _generate(call, batches: list[tuple[int, int]], steps: int, out: Path, *, diffusion: bool, preview=None):
    """Run the batches, each written as soon as it is done and found finite; returns
    (paths, total seconds, engine seconds, the last batch's info). Diffusion steps are drawn with
    :func:`progress_bar`; ``preview(step, x0, first image number)`` is called after each step when given."""
    from ..runtimes.base import nonfinite_detail

    written, total, engine, done, info = [], 0.0, 0.0, [0], {}
    # NaN / Inf are reported once, as a NonFiniteError naming where; numpy's warnings would be noise.
    with progress_bar() as report, np.errstate(all="ignore"):
        for start, count in batches:
            first, numbered = done[0], len(written)

            def advance(step, sigma, x0):
                done[0] += 1
                if preview is not None:
                    preview(step, x0, numbered)
                report("sampling", done[0], steps * len(batches))

            try:
                result = call(start, count, advance)
            except NonFiniteError as exc:
                if diffusion and "'unet" in exc.component and exc.step is None:
                    raise exc.at_step(done[0] - first + 1, steps) from None
                raise
            detail = nonfinite_detail(result.images)
            if detail:
                raise NonFiniteError("the generated images", "", "", f"{detail}; nothing was written for this batch")
            written += result.save(out, start=len(written))  # image-0000.png ... across batches, as the API names them
            total += result.timings["total_s"]
            engine += result.timings["engine_s"]
            info = result.info
    return written, total, engine, info


def _condition(pipe, prompt: Optional[str], class_label: Optional[int]) -> tuple[Optional[str], Optional[int]]:
    """(prompt, class_label) for the library: ``--prompt NAME`` on a class-conditional U-Net is the
    label of the class named NAME (the library takes labels only as ``class_label``)."""
    names = getattr(pipe, "class_names", None)
    if prompt is None or names is None or class_label is not None:
        return prompt, class_label
    if prompt.strip() not in names:
        raise InputError(f"--prompt: this U-Net is conditioned on classes {names}; expected one of them, "
                         f"got {prompt!r}")
    return None, names.index(prompt.strip())


def _kind(art) -> str:
    """The artifact's family, with U-Nets split into class-conditional and unconditional."""
    if art.family == "unet":
        return "unet-class" if art.spec.conditioning else "unet"
    return art.family


# Which options apply to which kind of artifact; any other combination is refused, not ignored.
_APPLIES = {
    "--prompt": {"stable-diffusion", "unet-class"},
    "--negative-prompt": {"stable-diffusion"},
    "--class-label": {"unet-class"},
    "--steps": {"stable-diffusion", "unet", "unet-class"},
    "--sampler": {"stable-diffusion", "unet", "unet-class"},
    "--sigmas": {"stable-diffusion", "unet", "unet-class"},
    "--eta": {"stable-diffusion", "unet", "unet-class"},
    "--guidance-scale": {"stable-diffusion", "unet-class"},
    "--guidance-interval": {"stable-diffusion", "unet-class"},
    "--init-noise": {"stable-diffusion", "unet", "unet-class"},
    "--latents": {"generator", "vae-decoder"},
    "--height": {"stable-diffusion", "vae-decoder"},
    "--width": {"stable-diffusion", "vae-decoder"},
    "--tile-size": {"stable-diffusion", "vae-decoder"},
    "--decoder": {"stable-diffusion"},
    "--preview-every": {"stable-diffusion"},
    "--init-image": {"stable-diffusion"},
    "--strength": {"stable-diffusion"},
}
_KIND_NAMES = {"stable-diffusion": "a Stable Diffusion", "unet": "an unconditional U-Net",
               "unet-class": "a class-conditional U-Net", "generator": "a generator", "vae-decoder": "a VAE decoder"}


def _check_applies(art, given: dict) -> None:
    """Refuse options that do not apply to this artifact (they would be silently ignored)."""
    kind = _kind(art)
    for flag, value in given.items():
        if kind not in _APPLIES[flag]:
            where = ", ".join(sorted(_KIND_NAMES[k].split(" ", 1)[1] for k in _APPLIES[flag]))
            fixed = " (its image size is fixed)" if flag in ("--height", "--width") else ""
            raise InputError(f"{flag}: does not apply to {_KIND_NAMES[kind]} artifact{fixed} (applies to: {where}); "
                             f"got {flag} {value}")
    if kind == "stable-diffusion" and given.get("--prompt") is None:
        raise InputError("--prompt: a Stable Diffusion artifact needs a prompt, got none "
                         "(pass --prompt '' for an unconditional sample)")


def _check_decoder(art, decoder: Optional[Decoder], preview_every: Optional[int]) -> None:
    """--decoder tiny needs the artifact's tiny decoder; --preview-every N needs N >= 1."""
    if decoder is Decoder.tiny and "vae_decoder_tiny" not in art.spec.components:
        raise InputError(f"--decoder tiny: this artifact has no tiny decoder (components "
                         f"{sorted(art.spec.components)}); export it with `edgegen export --model sd --tiny-vae DIR` "
                         "(DIR: a diffusers AutoencoderTiny, e.g. madebyollin/taesd)")
    if preview_every is not None and preview_every < 1:
        raise InputError(f"--preview-every: expected a number of steps >= 1, got {preview_every}")


def _check_text(value: str | None, flag: str) -> None:
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")[:40]
        raise InputError(f"{flag}: expected UTF-8 text, got bytes that are not UTF-8 ({raw!r})") from None


def _check_values(art, *, out: Path, prompt, negative_prompt, class_label, steps, eta, guidance_scale, seed,
                  num_images, precision, backend) -> None:
    """Ranges of the scalar options, and what the artifact offers (variants, classes, steps)."""
    _check_text(prompt, "--prompt")
    _check_text(negative_prompt, "--negative-prompt")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out: expected a directory (new or existing), got an existing file '{out}'")
    if seed < 0:
        raise InputError(f"--seed: expected an integer >= 0, got {seed}")
    if num_images is not None and not 1 <= num_images <= MAX_IMAGES:
        raise InputError(f"--num-images: expected 1..{MAX_IMAGES} (split larger jobs with --seed), got {num_images}")
    if eta is not None and not (math.isfinite(eta) and eta >= 0):
        raise InputError(f"--eta: expected a finite number >= 0, got {eta}")
    if guidance_scale is not None and not math.isfinite(guidance_scale):
        raise InputError(f"--guidance-scale: expected a finite number, got {guidance_scale}")
    if steps is not None:
        total = art.spec.schedule.num_train_timesteps if art.spec.scheduler is not None else 1000
        if not 1 <= steps <= total:
            raise InputError(f"--steps: expected 1..{total} (the scheduler's training timesteps), got {steps}")
    names = art.spec.conditioning.class_names if art.spec.conditioning else ()
    if prompt is not None and class_label is None and names and prompt.strip() not in names:
        raise InputError(f"--prompt: this U-Net is conditioned on classes {list(names)}; expected one of them "
                         f"(or --class-label N), got {prompt!r}")
    if class_label is not None:
        n = art.spec.conditioning.num_classes
        if not 0 <= class_label < n:
            raise InputError(f"--class-label: expected 0..{n - 1}, got {class_label}")
    if precision in ("int8", "fp16") and not (backend == "tensorrt" and precision == "fp16"):
        from ..types import Precision as Stored

        want, comps = Stored(precision), art.spec.components.values()
        if not any(want in c.variants or c.precision is want for c in comps):
            have = sorted({c.precision.value for c in comps} | {p.value for c in comps for p in c.variants})
            raise InputError(f"--precision {precision}: this artifact has no {precision.upper()} variant (has "
                             f"{', '.join(have)}); export it with --int8" if precision == "int8" else
                             f"--precision {precision}: this artifact has no {precision} variant (has {', '.join(have)})")


def _check_init_image(art, o: SimpleNamespace) -> None:
    """--init-image / --strength: a readable RGB image whose size is a multiple of the VAE factor
    and agrees with --height / --width (it sets them when they are not given), an artifact with a
    VAE encoder, and a strength in (0, 1] that leaves at least one of the steps."""
    from ..images import read_image

    if o.init_image is None:
        if o.strength is not None:
            raise InputError(f"--strength: applies to img2img, with --init-image; got --strength {o.strength} alone")
        return
    if "vae_encoder" not in art.spec.components:
        raise InputError(f"--init-image: artifact '{art.path}' has no vae_encoder component (exported before img2img); "
                         f"export it again with `edgegen export --model sd` to run img2img")
    strength, steps = 0.8 if o.strength is None else o.strength, o.steps or DEFAULTS["steps"]
    if not (math.isfinite(strength) and 0 < strength <= 1):
        raise InputError(f"--strength: expected a number in (0, 1], got {strength}")
    if int(steps * strength) < 1:
        raise InputError(f"--strength {strength} with --steps {steps} leaves no step (int(steps * strength) = 0); "
                         f"expected --strength >= {1 / steps:g} or more --steps")
    try:
        _, h, w, _ = read_image(o.init_image).shape
    except EngineInputError as exc:
        raise InputError("--init-image: " + str(exc).split(": ", 1)[1]) from None
    f = art.spec.latent.scale_factor or 8
    if h % f or w % f:
        raise InputError(f"--init-image: expected a height and width that are multiples of {f} (the VAE's scale "
                         f"factor), got {w}x{h} px (width x height) in '{o.init_image}'; crop or resize it")
    if (o.height or h, o.width or w) != (h, w):
        raise InputError(f"--init-image: its size sets the output's; expected --height {o.height or h} --width "
                         f"{o.width or w} to match it, got an image of height {h}, width {w} in '{o.init_image}'")
    o.height, o.width = h, w


def _check_interval(value: str | None) -> tuple[float, float] | None:
    """'LO,HI' -> (lo, hi) sigmas with 0 <= lo < hi; None for 'all' or not given."""
    from ..guidance import check_interval

    if value in (None, "all"):
        return None
    try:
        return check_interval(parse_range(value, "--guidance-interval"))
    except ValueError:
        raise InputError(f"--guidance-interval: expected LO,HI sigmas with 0 <= LO < HI, or 'all', got '{value}'") from None


def _check_size(art, height: int | None, width: int | None) -> tuple[int, int] | None:
    """(height, width) in pixels for artifacts of variable size (None for fixed-size ones).

    Refuses sizes <= 0 or not a multiple of the latent scale factor; whether the U-Net's
    down/up-sampling can take the size is checked with the memory (:func:`_check_memory`)."""
    if art.family not in ("stable-diffusion", "vae-decoder"):
        return None
    image = art.spec.image
    f = art.spec.latent.scale_factor or 8
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and (value <= 0 or value % f):
            raise InputError(f"{flag}: expected a positive multiple of {f} (the VAE's scale factor), got {value}")
    return (height or image.height, width or image.width)


def _check_tile(art, tile_size: int | None) -> None:
    """--tile-size: a positive multiple of the VAE's scale factor (whether it applies: :func:`_check_applies`)."""
    f = art.spec.latent.scale_factor or 8
    if tile_size is not None and (tile_size <= 0 or tile_size % f):
        raise InputError(f"--tile-size: expected a positive multiple of {f} (the VAE's scale factor), got {tile_size}")


def _load_array(path: Optional[Path], flag: str) -> Optional[np.ndarray]:
    """A ``.npy`` file holding one numeric array (no pickles, no ``.npz`` archives)."""
    if path is None:
        return None
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:4] == b"PK\x03\x04":
        with np.load(path) as archive:
            names = list(archive.files)
        raise InputError(f"{flag}: expected a .npy file holding one array, got a .npz archive '{path}' "
                         f"(arrays {names}); save one with np.save")
    if head != b"\x93NUMPY":
        what = "an empty file" if not head else "a file that does not start with the .npy magic bytes"
        raise InputError(f"{flag}: expected a .npy file (np.save), got {what} '{path}'")
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{flag}: expected a readable .npy array, could not read '{path}' "
                         f"({type(exc).__name__}: {exc or 'truncated'})") from None
    return value


def _check_array(art, value: np.ndarray, flag: str, size: tuple[int, int] | None, sized: bool) -> None:
    """dtype (real floats only), non-empty, finite, and the latent shape the artifact expects."""
    from ..pipelines.decoder import check_latents

    latent = art.spec.latent
    if latent.shape:
        expected = tuple(latent.shape)
    else:
        f = latent.scale_factor or 8
        free = art.family == "vae-decoder" and not sized  # the latents set the image size
        expected = (latent.channels, *((None, None) if free else (size[0] // f, size[1] // f)))
    check_latents(value, expected, flag, "" if size is None or None in expected else f" at {size[0]}x{size[1]} px")


def _check_batch(array: np.ndarray, flag: str, num_images: int | None) -> int:
    if num_images is not None and num_images != array.shape[0]:
        raise InputError(f"--num-images {num_images} conflicts with {flag}, which holds {array.shape[0]} image(s) "
                         f"(its first dimension); drop --num-images or give a file of {num_images}")
    return array.shape[0]


def _available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), None where unknown."""
    from ..memory import available_memory

    return available_memory()


def _check_memory(art, size: tuple[int, int] | None, batch: int, backend: str | None,
                  tile_size: int | None = None, memory: MemoryMode = MemoryMode.default, *,
                  tiny: bool = False) -> None:
    """Refuse a size the U-Net cannot take, or one whose activations cannot fit in memory.

    Runs OpenVINO's shape inference on the U-Net and VAE decoder at the requested size and batch
    (the VAE decoder at one tile: ``--tile-size``, else the smallest tile automatic tiling offers,
    :data:`edgegen.tiling.MIN_TILE`, since the pipeline tiles a decode that would not fit)
    (:func:`edgegen.runtimes.openvino.activation_estimate`; with ``tiny``, the tiny decoder that
    decodes instead of the full one); skipped where OpenVINO is missing,
    and at the artifact's own size with one image (the export ran it). The weights counted are
    every model file's (default memory) or the largest one's (``--memory low``).
    """
    import importlib.util

    from ..tiling import MIN_TILE

    default = (art.spec.image.height, art.spec.image.width)
    if size is None or (size == default and batch == 1) or importlib.util.find_spec("openvino") is None:
        return
    from ..runtimes import default_backend
    from ..runtimes.openvino import activation_estimate, read_graph

    f = art.spec.latent.scale_factor or 8
    h, w = size[0] // f, size[1] // f
    rows = 2 * batch if art.family == "stable-diffusion" and art.spec.guided else batch  # CFG runs both branches
    feeds = {"unet": ("sample", rows), ("vae_decoder_tiny" if tiny else "vae_decoder"): ("latents", batch)}
    comps = [name for name in art.spec.components if name in feeds]
    fused = (backend or default_backend()) == "openvino"
    files = [_file_bytes(art.component_path(name)) for name in art.spec.components]
    best, weights = None, max(files) if memory is MemoryMode.low else sum(files)
    for name in comps:
        tensor, n = feeds[name]
        tile = (tile_size or MIN_TILE) // f
        lh, lw = (min(h, tile), min(w, tile)) if name != "unet" else (h, w)
        graph = read_graph(art.component_path(name))
        try:
            est = activation_estimate(graph, {tensor: (n, art.spec.latent.channels, lh, lw)}, fused_attention=fused)
        except EngineInputError:
            multiple = _fitting_multiple(graph, tensor, n, art.spec.latent.channels) * f
            raise InputError(f"--height/--width: this {name.replace('_', ' ')} cannot take {size[0]}x{size[1]} px "
                             f"(latents {h}x{w}); expected a multiple of {multiple} px") from None
        del graph  # it holds the weights
        if best is None or est.nbytes > best[1].nbytes:
            best = (name, est)
    available = _available_memory()
    if best is None or available is None:
        return
    name, est = best
    need = weights + 2 * est.nbytes
    if any(name != "unet" for name in comps):  # tiled: the blended image and its [0, 1] copy span it (float32, up to 4 channels)
        need += 2 * batch * 4 * 4 * size[0] * size[1]
    if need > available:
        raise InputError(
            f"--height/--width {size[0]}x{size[1]} with {batch} image(s) per batch: needs at least {need / 2**30:.1f} GiB "
            f"(model files {weights / 2**30:.1f} GiB + twice {name}'s largest activation '{est.tensor}' {est.dtype} "
            f"{est.shape}), this machine has {available / 2**30:.1f} GiB available; use a smaller size or --batch-size"
            + (", or --memory low" if memory is MemoryMode.default else ""))


def _fitting_multiple(graph, tensor: str, rows: int, channels: int) -> int:
    """The smallest power of two a latent size must be a multiple of for ``graph`` (by shape inference)."""
    from ..runtimes.openvino import activation_estimate

    for k in range(8):
        try:
            activation_estimate(graph, {tensor: (rows, channels, 3 << k, 3 << k)})
            return 1 << k
        except EngineInputError:
            continue
    raise EdgegenError(f"{tensor}: no latent size of the form 3 * 2^k (k < 8) fits this graph")


def _file_bytes(path: Path) -> int:
    """A model file's size with its ONNX external data (``<file>.data``) when there is one."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def _refuse_in_ray_job(**given) -> None:
    """Options a Ray job does not carry to its requests: refused, not silently ignored."""
    with reported():
        for name, value in given.items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag}: does not apply to --ray / --prompts / --jobs runs (their requests "
                                 f"are the serve API's fields); got {flag} {getattr(value, 'value', value)}")


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
