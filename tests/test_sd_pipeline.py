"""Stable Diffusion: exported tiny random-init pipeline vs diffusers' StableDiffusionPipeline.

Same initial noise, 10 steps, guidance 7.5; images in 0..1 must agree to max abs 2e-3
(measured ~2e-6 on 2026-11-21: the gap is float32 rounding between engines), for DDIM, Euler and
DPM-Solver++ 2M (Karras and discrete sigmas).
"""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import reference_pipeline, run_cli

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen import Pipeline  # noqa: E402

H = W = 32


@pytest.fixture(scope="module")
def reference_pipe(tiny_sd_dir):
    return reference_pipeline(diffusers.StableDiffusionPipeline, tiny_sd_dir)


@pytest.mark.parametrize("sampler,scheduler,sigmas", [
    ("ddim", "DDIMScheduler", None), ("euler", "EulerDiscreteScheduler", None),
    ("dpmpp-2m", "DPMSolverMultistepScheduler", "karras"), ("dpmpp-2m", "DPMSolverMultistepScheduler", "discrete")])
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_matches_diffusers(tiny_sd_artifact, reference_pipe, sampler, scheduler, sigmas, backend):
    noise = np.random.default_rng(3).standard_normal((2, 4, H // 2, W // 2), dtype=np.float32)
    reference_pipe.scheduler = getattr(diffusers, scheduler).from_config(
        reference_pipe.scheduler.config, use_karras_sigmas=sigmas == "karras")
    ref = reference_pipe("a red cube on a table", negative_prompt="blurry", num_inference_steps=10,
                         guidance_scale=7.5, num_images_per_prompt=2, latents=torch.from_numpy(noise),
                         height=H, width=W, output_type="np").images
    ours = Pipeline.load(tiny_sd_artifact, backend=backend)
    got = ours("a red cube on a table", negative_prompt="blurry", num_inference_steps=10, guidance_scale=7.5,
               sampler=sampler, sigmas=sigmas, init_noise=noise, height=H, width=W)
    assert got.images.shape == ref.shape
    assert np.abs(got.images - ref).max() <= 2e-3
    assert ours.precision == "fp32"


def test_guidance_scale_one_skips_unconditional_pass(tiny_sd_artifact):
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    with_cfg = pipe("x", num_inference_steps=3, guidance_scale=7.5, height=H, width=W)
    without = pipe("x", num_inference_steps=3, guidance_scale=1.0, height=H, width=W)
    assert with_cfg.timings["engines"]["text_encoder"]["calls"] == 2
    assert without.timings["engines"]["text_encoder"]["calls"] == 1
    assert without.timings["engines"]["unet"]["calls"] == 3
    assert not np.allclose(with_cfg.images, without.images)


def test_cli_run_writes_pngs_with_metadata(tiny_sd_artifact, tmp_path):
    noise = np.random.default_rng(0).standard_normal((1, 4, H // 2, W // 2), dtype=np.float32)
    np.save(tmp_path / "noise.npy", noise)
    result = run_cli("run", tiny_sd_artifact, "--prompt", "a cat", "--steps", "4", "--sampler", "euler-a",
                     "--init-noise", tmp_path / "noise.npy", "--height", H, "--width", W, "--backend", "onnxruntime",
                     "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 1
    image = Image.open(files[0])
    assert image.size == (W, H) and image.mode == "RGB"
    assert image.text["prompt"] == "a cat" and image.text["sampler"] == "euler-a"
    assert image.text["steps"] == "4" and image.text["seed"] == "0"


def test_manifest_records_what_the_artifact_is(tiny_sd_artifact):
    m = json.loads((tiny_sd_artifact / "edgegen.json").read_text())
    assert m["family"] == "stable-diffusion" and m["schema_version"] == 1
    assert set(m["components"]) == {"text_encoder", "unet", "vae_decoder", "vae_encoder"}
    unet = m["components"]["unet"]
    assert unet["inputs"][0]["shape"] == ["batch", 4, "latent_height", "latent_width"]
    assert unet["parity"]["outputs"]["noise_pred"]["max_abs"] < 1e-4
    assert m["tokenizer"]["max_length"] == 77 and m["latent"]["scaling_factor"] == pytest.approx(0.18215)
    assert m["scheduler"]["beta_schedule"] == "scaled_linear"


def test_tokenizer_matches_transformers(tiny_sd_dir, tiny_sd_artifact):
    from transformers import CLIPTokenizer

    from edgegen.tokenizer import ClipTokenizer

    reference = CLIPTokenizer.from_pretrained(str(tiny_sd_dir / "tokenizer"))
    tok = json.loads((tiny_sd_artifact / "edgegen.json").read_text())["tokenizer"]
    ours = ClipTokenizer(tiny_sd_artifact / tok["file"], max_length=tok["max_length"], pad_id=tok["pad_id"])
    prompts = ["the cat", "", "A photo of an astronaut riding a horse on Mars, 4k!!", "word " * 100, "Ünïcode ✓"]
    expected = reference(prompts, padding="max_length", max_length=77, truncation=True).input_ids
    np.testing.assert_array_equal(ours(prompts), np.asarray(expected))


def test_partial_export_and_unreachable_hub(tiny_sd_dir, tmp_path):
    result = run_cli("export", "--model", "sd-vae-decoder", "--from", tiny_sd_dir, "--out", tmp_path / "vae")
    assert result.exit_code == 0, result.output
    pipe = Pipeline.load(tmp_path / "vae", backend="onnxruntime")
    assert pipe(num_images=2, height=32, width=32).images.shape == (2, 32, 32, 3)
    result = run_cli("export", "--model", "sd", "--from", "nobody/no-such-model", "--out", tmp_path / "hub")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hub is unreachable" in errors[0], result.output
    assert not (tmp_path / "hub").exists()


@pytest.fixture(scope="module")
def ort_pipe(tiny_sd_artifact):
    return Pipeline.load(tiny_sd_artifact, backend="onnxruntime")


def test_explicit_eta_zero_is_honoured(ort_pipe):
    """euler-a at eta 0 is Euler (it used to become 1); by default euler-a is ancestral."""
    common = dict(num_inference_steps=4, height=H, width=W, seed=2)
    euler = ort_pipe("a cat", sampler="euler", **common)
    deterministic = ort_pipe("a cat", sampler="euler-a", eta=0.0, **common)
    ancestral = ort_pipe("a cat", sampler="euler-a", **common)
    np.testing.assert_array_equal(deterministic.images, euler.images)
    assert not np.allclose(ancestral.images, euler.images)
    assert deterministic.info["eta"] == 0.0 and ancestral.info["eta"] == 1.0


def test_guidance_interval_applies_to_stable_diffusion(ort_pipe):
    """SD used to ignore guidance_interval: an interval no step falls in is the conditional branch alone."""
    common = dict(num_inference_steps=4, height=H, width=W, seed=1)
    unguided = ort_pipe("a cat", guidance_scale=1.0, **common)
    empty = ort_pipe("a cat", guidance_scale=7.5, guidance_interval=(0.0, 1e-4), **common)
    np.testing.assert_array_equal(empty.images, unguided.images)
    partial = ort_pipe("a cat", guidance_scale=7.5, guidance_interval=(0.0, 2.0), **common)
    assert partial.info["guidance_interval"] == [0.0, 2.0]
    assert not np.allclose(partial.images, unguided.images)


def test_callback_sees_sigma_and_x0_and_can_stop(ort_pipe):
    seen = []

    def callback(step, sigma, x0):
        seen.append((step, sigma, x0.shape))
        return step < 2  # stop after the third step

    result = ort_pipe("a cat", num_inference_steps=6, sampler="dpmpp-2m", sigmas="karras", height=H, width=W,
                      callback=callback)
    assert [s for s, _, _ in seen] == [0, 1, 2] and seen[0][2] == (1, 4, H // 2, W // 2)
    assert seen[0][1] > seen[1][1] > seen[2][1] > 0
    assert result.info["stopped_at_step"] == 3
    assert result.timings["engines"]["unet"]["calls"] == 3
    assert result.images.shape == (1, H, W, 3) and np.isfinite(result.images).all()
    full = ort_pipe("a cat", num_inference_steps=6, sampler="dpmpp-2m", height=H, width=W, callback=lambda *a: None)
    assert "stopped_at_step" not in full.info and full.timings["engines"]["unet"]["calls"] == 6


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(init_noise=np.zeros((1, 4, 16, 16), np.float64)), "EngineInputError", "init_noise: expected a float32"),
    (dict(init_noise=np.zeros((1, 3, 16, 16), np.float32)), "EngineInputError", r"init_noise: expected float32 \(1, 4, 16, 16\)"),
    (dict(init_noise=np.full((1, 4, 16, 16), np.nan, np.float32)), "NonFiniteError", "input 'init_noise' expects finite"),
    (dict(init_noise=np.zeros((2, 4, 16, 16), np.float32), num_images=3), "EngineInputError", r"num_images: expected 2"),
    (dict(num_images=0), "EngineInputError", "num_images: expected an integer >= 1, got 0"),
    (dict(guidance_scale=float("nan")), "EngineInputError", "guidance_scale: expected a finite number, got nan"),
    (dict(eta=-0.5, sampler="ddim"), "EngineInputError", "eta: expected a finite number >= 0"),
    (dict(eta=float("inf"), sampler="ddim"), "EngineInputError", "eta: expected a finite number >= 0"),
    (dict(eta=0.5, sampler="dpmpp-2m"), "EngineInputError", "eta: dpmpp-2m has a fixed eta 0"),
    (dict(num_inference_steps=0), "EngineInputError", "num_inference_steps: expected an integer >= 1, got 0"),
    (dict(num_inference_steps=2.5), "EngineInputError", "num_inference_steps: expected an integer >= 1, got 2.5"),
    (dict(num_inference_steps=5000), "ScheduleError", "num_inference_steps: expected 1..1000, got 5000"),
    (dict(sampler="heun"), "ScheduleError", "sampler: expected one of ddpm, ddim, euler, euler-a, dpmpp-2m, lcm, got 'heun'"),
    (dict(sampler="ddim", sigmas="karras"), "ScheduleError", "sigmas: ddim runs on the discrete"),
    (dict(class_label=3), "EngineInputError", "class_label: a Stable Diffusion artifact takes a text prompt"),
    (dict(guidance_interval=(2.0, 1.0)), "EngineInputError", r"guidance_interval: expected .* got \(2.0, 1.0\)"),
])
def test_call_arguments_are_checked_at_the_boundary(ort_pipe, kwargs, error, match):
    import edgegen.errors

    with pytest.raises(getattr(edgegen.errors, error), match=match):
        ort_pipe("a cat", height=H, width=W, **kwargs)
    assert ort_pipe.unet.calls == 0, "nothing ran before the check"


def test_file_variant_and_compute_hint_are_separate_arguments(tiny_sd_artifact):
    """``compute="bf16"`` runs the stored FP32 files in BF16 on OpenVINO; ``precision="bf16"`` is
    its older spelling; the hint elsewhere, or an unknown variant, is refused by name."""
    from edgegen.errors import BackendUnavailableError, EngineInputError

    hinted = Pipeline.load(tiny_sd_artifact, backend="openvino", compute="bf16")
    legacy = Pipeline.load(tiny_sd_artifact, backend="openvino", precision="bf16")
    assert hinted.precision == legacy.precision == "bf16"
    assert Pipeline.load(tiny_sd_artifact, backend="openvino", compute="f32").precision == "fp32"
    with pytest.raises(BackendUnavailableError, match="compute bf16: expected backend openvino"):
        Pipeline.load(tiny_sd_artifact, backend="onnxruntime", compute="bf16")
    with pytest.raises(EngineInputError, match="precision: expected one of fp32, fp16, int8, got 'fp8'"):
        Pipeline.load(tiny_sd_artifact, backend="openvino", precision="fp8")
