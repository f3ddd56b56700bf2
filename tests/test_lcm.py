"""LCM end to end: a tiny random-init LCM-distilled pipeline (``build_random_sd(..., lcm=True)``: a
U-Net with ``time_cond_proj_dim``, LCMScheduler) exported with ``edgegen export --model sd`` and run
by the numpy runtime, against diffusers' LatentConsistencyModelPipeline on the same directory.

Same initial latents; the re-noising between steps draws the same numbers on both sides (diffusers'
LCMScheduler is given edgegen's noise stream, see ``same_step_noise``). 1, 2 and 4 steps at guidance
8.5 (LCM's default); images in 0..1 must agree to max abs 2e-3 (measured 1.0e-6 to 1.2e-6 on
2026-11-23, both backends: float32 rounding between engines).
"""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import reference_pipeline, run_cli

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen import Pipeline  # noqa: E402
from edgegen.errors import EngineInputError, ManifestError  # noqa: E402
from edgegen.guidance import guidance_scale_embedding  # noqa: E402
from edgegen.manifest import parse_manifest  # noqa: E402

H = W = 32
PROMPT = "a red cube on a table"


@pytest.fixture(scope="module")
def lcm_dir(tmp_path_factory):
    from random_sd import build_random_sd

    return build_random_sd(tmp_path_factory.mktemp("sd") / "tiny-lcm", "tiny", seed=0, lcm=True)


@pytest.fixture(scope="module")
def lcm_artifact(lcm_dir, tmp_path_factory):
    """Exported through the CLI, as a user would (``edgegen export --model sd``)."""
    out = tmp_path_factory.mktemp("art") / "tiny-lcm"
    result = run_cli("export", "--model", "sd", "--from", lcm_dir, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def reference_pipe(lcm_dir):
    return reference_pipeline(diffusers.LatentConsistencyModelPipeline, lcm_dir)


def same_step_noise(monkeypatch, seed: int) -> None:
    """Give LCMScheduler.step the numbers edgegen's pipeline draws for re-noising with ``seed`` and
    ``init_noise`` given: ``default_rng(seed).standard_normal`` float32, one draw per step but the
    last. Only the noise source is replaced; the scheduler's maths is diffusers' own."""
    import diffusers.schedulers.scheduling_lcm as lcm_module

    rng = np.random.default_rng(seed)

    def randn_tensor(shape, generator=None, device=None, dtype=None, **_):
        return torch.from_numpy(rng.standard_normal(tuple(shape), dtype=np.float32)).to(dtype=dtype)

    monkeypatch.setattr(lcm_module, "randn_tensor", randn_tensor)


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_lcm_matches_diffusers(lcm_artifact, reference_pipe, monkeypatch, steps, backend):
    noise = np.random.default_rng(3).standard_normal((2, 4, H // 2, W // 2), dtype=np.float32)
    same_step_noise(monkeypatch, seed=5)
    ref = reference_pipe(PROMPT, num_inference_steps=steps, guidance_scale=8.5, num_images_per_prompt=2,
                         latents=torch.from_numpy(noise), height=H, width=W, output_type="np").images
    ours = Pipeline.load(lcm_artifact, backend=backend)
    got = ours(PROMPT, num_inference_steps=steps, guidance_scale=8.5, init_noise=noise, seed=5, height=H, width=W)
    assert got.info["sampler"] == "lcm" and got.info["guidance_scale"] == 8.5
    assert got.timings["engines"]["unet"]["calls"] == steps  # one U-Net call per step: no CFG batch
    assert got.timings["engines"]["text_encoder"]["calls"] == 1  # no unconditional prompt
    assert got.images.shape == ref.shape
    assert np.abs(got.images - ref).max() <= 2e-3, np.abs(got.images - ref).max()


def test_guidance_scale_is_an_input(lcm_artifact):
    """The manifest says the U-Net takes the w-embedding; the scale changes the image through it and
    what needs an unconditional branch is refused, not ignored."""
    manifest = json.loads((lcm_artifact / "edgegen.json").read_text())
    assert manifest["guidance_embedding"] == {"type": "lcm", "input": "timestep_cond", "dim": 256}
    assert manifest["scheduler"]["_class_name"] == "LCMScheduler"
    assert {"name": "timestep_cond", "shape": ["batch", 256], "dtype": "float32"} in \
        manifest["components"]["unet"]["inputs"]
    del manifest["guidance_embedding"]
    with pytest.raises(ManifestError, match="guidance_embedding: expected .*the U-Net has a timestep_cond input"):
        parse_manifest(manifest)
    pipe = Pipeline.load(lcm_artifact, backend="onnxruntime")
    low, high = (pipe("x", num_inference_steps=1, guidance_scale=w, height=H, width=W) for w in (1.0, 8.5))
    assert not np.allclose(low.images, high.images)
    with pytest.raises(EngineInputError, match="negative_prompt: this LCM-distilled U-Net"):
        pipe("x", negative_prompt="blurry", num_inference_steps=1, height=H, width=W)
    with pytest.raises(EngineInputError, match="guidance_interval: this LCM-distilled U-Net"):
        pipe("x", guidance_interval=(0.0, 1.0), num_inference_steps=1, height=H, width=W)


@pytest.mark.parametrize("guidance_scale", [8.5, 1.0, 2.0, 0.0])
@pytest.mark.parametrize("dim", [256, 32, 7])
def test_guidance_scale_embedding_matches_diffusers(guidance_scale, dim):
    """Bit-for-bit but for torch's float32 exp, 1 ulp from numpy's on some frequencies; times 1000 w
    that moves an angle by up to ~1e-3 rad at w = 7.5, dim 256 (measured 4.9e-4)."""
    w = torch.tensor(guidance_scale - 1).repeat(3)
    ref = diffusers.LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=dim).numpy()
    got = guidance_scale_embedding(guidance_scale, dim, 3)
    assert got.shape == (3, dim) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 2e-3


def test_cli_runs_lcm(lcm_artifact, tmp_path):
    result = run_cli("run", lcm_artifact, "--prompt", "a cat", "--sampler", "lcm", "--steps", "4",
                     "--guidance-scale", "8.5", "--num-images", "2", "--out", tmp_path / "images")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "images").glob("*.png")) == ["image-0000.png", "image-0001.png"]
    # Left out, --steps and --guidance-scale are LatentConsistencyModelPipeline's: 4 and 8.5.
    result = run_cli("run", lcm_artifact, "--prompt", "a cat", "--out", tmp_path / "defaults")
    assert result.exit_code == 0, result.output
    text = Image.open(tmp_path / "defaults" / "image-0000.png").text
    assert (text["sampler"], text["steps"], text["guidance_scale"]) == ("lcm", "4", "8.5"), text
    refused = run_cli("run", lcm_artifact, "--prompt", "a cat", "--negative-prompt", "x", "--steps", "1",
                      "--out", tmp_path / "no")
    assert refused.exit_code == 1 and "negative_prompt: this LCM-distilled U-Net" in refused.output


def test_int8_calibrates_on_the_lcm_trajectory(lcm_artifact, tmp_path):
    """``edgegen quantize`` on an LCM artifact records what it runs (LCM, 4 steps, guidance 8.5),
    not SD's DDIM 20 at 7.5, unless told otherwise; the INT8 pipeline then runs."""
    out = tmp_path / "lcm-int8"
    result = run_cli("quantize", lcm_artifact, "--out", out, "--calibration-samples", "2", "--gate-samples", "1",
                     "--force-int8", "--min-psnr", "0", "--min-ssim", "0", "--max-step-error", "10")
    assert result.exit_code == 0, result.output
    options = json.loads((out / "edgegen.json").read_text())["quantization"]["int8"]["options"]
    assert (options["sampler"], options["steps"], options["guidance_scale"]) == ("lcm", 4, 8.5)
    image = Pipeline.load(out, precision="int8")("a cat", num_inference_steps=2, seed=0).images
    assert np.isfinite(image).all()
