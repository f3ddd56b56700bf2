"""img2img: exported tiny random-init SD vs diffusers' StableDiffusionImg2ImgPipeline.

Both sides draw every random number from one seeded torch generator in diffusers' order (the
VAE latent sample, the noise added at the first kept step, then each ancestral step's noise):
diffusers through ``generator=``, edgegen through the call's ``noise=`` source. 10 steps,
guidance 7.5, 32x32 px, 2 images; images in 0..1 must agree to max abs 2e-3 for every sampler,
sigma schedule and strength, the truncated schedule included (lcm: LCMScheduler in the img2img
pipeline). Measured 2026-11-23 (the same cases in a script): ONNX Runtime 9.5e-7..3.6e-6 (float32
rounding), OpenVINO 4.1e-4..7.3e-4 (it runs the export's FP16-weight IR variant).
"""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import reference_pipeline, run_cli

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen import Pipeline  # noqa: E402
from edgegen.errors import ArtifactError, EngineInputError, ScheduleError  # noqa: E402

H = W = 32
SCHEDULERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler",
              "euler-a": "EulerAncestralDiscreteScheduler", "dpmpp-2m": "DPMSolverMultistepScheduler",
              "lcm": "LCMScheduler"}


@pytest.fixture(scope="module")
def reference_pipe(tiny_sd_dir):
    return reference_pipeline(diffusers.StableDiffusionImg2ImgPipeline, tiny_sd_dir)


@pytest.fixture(scope="module")
def pipes(tiny_sd_artifact):
    return {backend: Pipeline.load(tiny_sd_artifact, backend=backend) for backend in ("onnxruntime", "openvino")}


def init_image(seed: int = 7) -> np.ndarray:
    """(H, W, 3) uint8: smooth colour gradients plus noise, so the VAE sees some structure."""
    y, x = np.mgrid[0:H, 0:W] / H
    base = np.stack([x, y, 1 - x * y], axis=-1) * 200
    return (base + np.random.default_rng(seed).uniform(0, 55, (H, W, 3))).astype(np.uint8)


def torch_noise(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(tuple(shape), generator=gen, dtype=torch.float32).numpy()


# lcm: LCMScheduler in StableDiffusionImg2ImgPipeline (get_timesteps slices its grid); diffusers'
# LatentConsistencyModelImg2ImgPipeline instead builds a strength-dependent grid (set_timesteps(strength=)).
CASES = [("ddpm", None), ("ddim", None), ("euler", None), ("euler-a", None), ("dpmpp-2m", "discrete"),
         ("dpmpp-2m", "karras"), ("lcm", None)]


@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
@pytest.mark.parametrize("sampler,sigmas", CASES)
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_matches_diffusers(pipes, reference_pipe, sampler, sigmas, strength, backend):
    if backend == "openvino" and strength != 0.75:
        pytest.skip("OpenVINO: one strength per sampler keeps the default run short")
    image = init_image()
    reference_pipe.scheduler = getattr(diffusers, SCHEDULERS[sampler]).from_config(
        reference_pipe.scheduler.config, use_karras_sigmas=sigmas == "karras")
    ref = reference_pipe("a red cube", image=Image.fromarray(image), strength=strength, negative_prompt="blurry",
                         num_inference_steps=10, guidance_scale=7.5, num_images_per_prompt=2,
                         generator=torch.Generator().manual_seed(5), output_type="np").images
    got = pipes[backend]("a red cube", init_image=image, strength=strength, negative_prompt="blurry",
                         num_inference_steps=10, guidance_scale=7.5, num_images=2, sampler=sampler, sigmas=sigmas,
                         noise=torch_noise(5))
    assert got.images.shape == ref.shape == (2, H, W, 3)
    assert np.abs(got.images - ref).max() <= 2e-3
    assert got.info["strength"] == strength
    assert got.timings["engines"]["unet"]["calls"] == int(10 * strength)
    assert got.timings["engines"]["vae_encoder"]["calls"] == 1


@pytest.mark.parametrize("scheduler,sampler,sigmas", [
    ("DDPMScheduler", "ddpm", None), ("DDIMScheduler", "ddim", None), ("EulerDiscreteScheduler", "euler", None),
    ("EulerDiscreteScheduler", "euler", "karras"), ("EulerAncestralDiscreteScheduler", "euler-a", None), ("DPMSolverMultistepScheduler", "dpmpp-2m", "karras"),
    ("DPMSolverMultistepScheduler", "dpmpp-2m", "discrete"), ("LCMScheduler", "lcm", None)])
@pytest.mark.parametrize("steps,strength", [(10, 0.3), (7, 0.5), (20, 0.75), (4, 1.0), (3, 0.34)])
def test_truncated_schedule_is_diffusers_get_timesteps(tiny_sd_dir, scheduler, sampler, sigmas, steps, strength):
    """The plan's timesteps / sigmas from t_start on, and where add_noise puts the image latents."""
    from edgegen.samplers import SamplingPlan
    from edgegen.schedules import NoiseSchedule

    config = json.loads((tiny_sd_dir / "scheduler" / "scheduler_config.json").read_text())
    ref = getattr(diffusers, scheduler).from_config(config, use_karras_sigmas=sigmas == "karras")
    ref.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    t_start = max(steps - init, 0)
    plan = SamplingPlan.build(NoiseSchedule.from_config(config), sampler, steps, sigmas=sigmas).truncated(strength)
    np.testing.assert_allclose(plan.timesteps, ref.timesteps[t_start:].numpy(), rtol=0, atol=1e-3)
    x0 = np.random.default_rng(0).standard_normal((1, 4, 4, 4), dtype=np.float32)
    eps = np.random.default_rng(1).standard_normal((1, 4, 4, 4), dtype=np.float32)
    if hasattr(ref, "set_begin_index"):  # as get_timesteps does
        ref.set_begin_index(t_start)
    noised = ref.add_noise(torch.from_numpy(x0), torch.from_numpy(eps), ref.timesteps[t_start:t_start + 1]).numpy()
    start = plan.start(eps, x0)  # VP for ddpm, else sigma space: diffusers holds VP for ddim / dpmpp-2m / lcm
    if plan.vp and sampler != "ddpm":
        start = start / np.sqrt(1 + np.float32(plan.sigmas[0]) ** 2)
    np.testing.assert_allclose(start, noised, rtol=0, atol=2e-5)


@pytest.mark.parametrize("strength,error,match", [
    (0, ScheduleError, r"strength: expected a number in \(0, 1\], got 0"),
    (1.5, ScheduleError, r"strength: expected a number in \(0, 1\], got 1.5"),
    (float("nan"), ScheduleError, r"strength: expected a number in \(0, 1\], got nan"),
    (0.05, ScheduleError, r"strength: 0.05 of 10 steps leaves int\(10 \* 0.05\) = 0 steps"),
])
def test_bad_strength_is_refused_before_any_engine(pipes, strength, error, match):
    pipe = pipes["onnxruntime"]
    with pytest.raises(error, match=match):
        pipe("x", init_image=init_image(), strength=strength, num_inference_steps=10)
    assert "vae_encoder" not in pipe.engines or pipe.engines["vae_encoder"].calls == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(strength=0.5), "strength: applies to img2img"),
    (dict(init_image=np.zeros((31, 32, 3), np.uint8)), "init_image: expected height and width multiples of 2"),
    (dict(init_image=np.zeros((32, 32, 3), np.uint8), height=64), r"init_image: expected 64x32 px"),
    (dict(init_image=np.full((32, 32, 3), 1.5, np.float32)), r"init_image: expected float values in \[0, 1\]"),
    (dict(init_image=np.zeros((32, 32), np.uint8)), r"init_image: expected an \(H, W, 3\)"),
    (dict(init_image=np.zeros((3, 32, 32, 3), np.uint8), num_images=2), "init_image: expected 1 image or as many"),
])
def test_bad_init_image_names_the_argument(pipes, kwargs, match):
    with pytest.raises(EngineInputError, match=match):
        pipes["onnxruntime"]("x", num_inference_steps=4, **kwargs)


def test_text_file_as_image_and_artifact_without_encoder(tiny_sd_artifact, tmp_path, pipes):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(EngineInputError, match="init_image: expected an image file Pillow can read"):
        pipes["onnxruntime"]("x", init_image=text, num_inference_steps=4)
    old = without_encoder(tiny_sd_artifact, tmp_path / "old")
    pipe = Pipeline.load(old, backend="onnxruntime")
    assert pipe("x", num_inference_steps=2).images.shape == (1, H, W, 3)  # text-to-image still runs
    with pytest.raises(ArtifactError, match="has no vae_encoder component .* export it again"):
        pipe("x", init_image=init_image(), num_inference_steps=2)


def without_encoder(art, out):
    """A copy of ``art`` as exported before img2img: no vae_encoder component or file."""
    import shutil

    shutil.copytree(art, out)
    manifest = json.loads((out / "edgegen.json").read_text())
    del manifest["components"]["vae_encoder"]
    manifest["files"] = {k: v for k, v in manifest.get("files", {}).items() if not k.startswith("vae_encoder")}
    (out / "edgegen.json").write_text(json.dumps(manifest))
    for path in out.glob("vae_encoder*"):
        path.unlink()
    return out


def test_cli_img2img_writes_png_with_strength(tiny_sd_artifact, tmp_path):
    Image.fromarray(init_image()).save(tmp_path / "in.png")
    result = run_cli("run", tiny_sd_artifact, "--prompt", "a cat", "--init-image", tmp_path / "in.png", "--strength",
                     "0.5", "--steps", "4", "--backend", "onnxruntime", "--num-images", "2", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 2
    image = Image.open(files[0])
    assert image.size == (W, H) and image.mode == "RGB"
    assert image.text["strength"] == "0.5" and image.text["init_image"] == str(tmp_path / "in.png")
    assert image.text["steps"] == "4"


@pytest.mark.parametrize("args,message", [
    (["--strength", "0"], r"--strength: expected a number in (0, 1], got 0.0"),
    (["--strength", "1.5"], r"--strength: expected a number in (0, 1], got 1.5"),
    (["--strength", "nan"], r"--strength: expected a number in (0, 1], got nan"),
    (["--strength", "0.1", "--steps", "5"], "--strength 0.1 with --steps 5 leaves no step"),
    (["--height", "64"], "--init-image: its size sets the output's; expected --height 64 --width 32"),
    (["text"], "--init-image: expected an image file Pillow can read"),
    (["odd"], "--init-image: expected a height and width that are multiples of 2"),
    (["old"], "has no vae_encoder component (exported before img2img); export it again"),
])
def test_cli_refusals_are_one_line(tiny_sd_artifact, tmp_path, args, message):
    image = tmp_path / "in.png"
    Image.fromarray(init_image()).save(image)
    art = tiny_sd_artifact
    if args == ["text"]:
        image.write_text("hello")
        args = []
    elif args == ["odd"]:
        Image.fromarray(init_image()[:31]).save(image)
        args = []
    elif args == ["old"]:
        art, args = without_encoder(tiny_sd_artifact, tmp_path / "old"), []
    result = run_cli("run", art, "--prompt", "a cat", "--init-image", image, *args, "--out", tmp_path / "out")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "out").exists()


def test_cli_strength_alone_and_init_image_on_a_unet(tmp_path, tiny_sd_artifact):
    result = run_cli("run", tiny_sd_artifact, "--prompt", "a cat", "--strength", "0.5", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--strength: applies to img2img, with --init-image" in result.output
