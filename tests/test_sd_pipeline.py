"""Stable Diffusion: exported tiny random-init pipeline vs diffusers' StableDiffusionPipeline.

Same initial noise, 10 steps, guidance 7.5; images in 0..1 must agree to max abs 2e-3
(measured ~2e-6 on 2026-11-21: the gap is float32 rounding between engines).
"""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen import Pipeline  # noqa: E402

H = W = 32


@pytest.fixture(scope="module")
def reference_pipe(tiny_sd_dir):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("sampler,scheduler", [("ddim", "DDIMScheduler"), ("euler", "EulerDiscreteScheduler")])
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_matches_diffusers(tiny_sd_artifact, reference_pipe, sampler, scheduler, backend):
    noise = np.random.default_rng(3).standard_normal((2, 4, H // 2, W // 2), dtype=np.float32)
    reference_pipe.scheduler = getattr(diffusers, scheduler).from_config(reference_pipe.scheduler.config)
    ref = reference_pipe("a red cube on a table", negative_prompt="blurry", num_inference_steps=10,
                         guidance_scale=7.5, num_images_per_prompt=2, latents=torch.from_numpy(noise),
                         height=H, width=W, output_type="np").images
    ours = Pipeline.load(tiny_sd_artifact, backend=backend)
    got = ours("a red cube on a table", negative_prompt="blurry", num_inference_steps=10, guidance_scale=7.5,
               sampler=sampler, init_noise=noise, height=H, width=W)
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
    assert set(m["components"]) == {"text_encoder", "unet", "vae_decoder"}
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
