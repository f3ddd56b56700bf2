"""Tiny decoders (TAESD via diffusers' AutoencoderTiny) and cheap previews on the tiny random-init SD.

Parity: edgegen ``decoder="tiny"`` vs diffusers' ``AutoencoderTiny.decode`` on the same latents,
and vs a whole ``StableDiffusionPipeline`` with ``vae=AutoencoderTiny`` given the same initial
noise; images in [0, 1] to max abs 2e-3 on OpenVINO and ONNX Runtime (measured ~1e-6 on
2026-11-23: float32 rounding between engines).
"""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edgegen import Pipeline  # noqa: E402
from edgegen.errors import EngineInputError, ExportError  # noqa: E402
from edgegen.metrics import psnr  # noqa: E402

H = W = 32


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    from random_sd import build_random_tiny_vae

    return build_random_tiny_vae(tmp_path_factory.mktemp("taesd") / "tiny-vae", "tiny", seed=1)


@pytest.fixture(scope="module")
def tiny_artifact(tiny_sd_dir, tiny_vae_dir, tmp_path_factory):
    from edgegen.export import export_stable_diffusion

    return export_stable_diffusion(tiny_sd_dir, tmp_path_factory.mktemp("art") / "tiny-sd-taesd", tiny_vae=tiny_vae_dir)


@pytest.fixture(scope="module")
def reference_tiny(tiny_vae_dir):
    return diffusers.AutoencoderTiny.from_pretrained(str(tiny_vae_dir)).eval()


def test_manifest_records_the_tiny_decoder(tiny_artifact, tiny_vae_dir):
    from edgegen.artifact import Artifact

    spec = Artifact.load(tiny_artifact).spec
    assert set(spec.components) == {"text_encoder", "unet", "vae_decoder", "vae_encoder", "vae_decoder_tiny"}
    tiny = spec.component("vae_decoder_tiny")
    assert tiny.inputs == spec.component("vae_decoder").inputs  # the same latents feed both
    assert spec.tiny_decoder.source == str(tiny_vae_dir) and spec.tiny_decoder.latent_channels == 4
    assert spec.tiny_decoder.scaling_factor == 1.0 and spec.tiny_decoder.input_scale == pytest.approx(0.18215)
    assert tiny.parity["outputs"]["image"]["max_abs"] < 1e-4
    assert len(spec.preview.matrix) == 4 and len(spec.preview.bias) == 3


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_tiny_decoder_matches_autoencoder_tiny_on_the_same_latents(tiny_artifact, reference_tiny, backend):
    from edgegen.artifact import Artifact
    from edgegen.runtimes import load_engine

    art = Artifact.load(tiny_artifact)
    x0 = np.random.default_rng(0).standard_normal((2, 4, 12, 20), dtype=np.float32)  # the U-Net's latents
    engine = load_engine(art.component_path("vae_decoder_tiny"), backend)
    got = engine({"latents": x0 / np.float32(art.spec.latent.scaling_factor)})["image"]
    with torch.no_grad():  # what StableDiffusionPipeline does: vae.decode(latents / vae.config.scaling_factor)
        ref = reference_tiny.decode(torch.from_numpy(x0) / reference_tiny.config.scaling_factor).sample.numpy()
    assert got.shape == ref.shape == (2, 3, 24, 40)
    assert np.abs(got - ref).max() <= 2e-3


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_decoder_tiny_matches_diffusers_pipeline_with_autoencoder_tiny(tiny_sd_dir, tiny_artifact, reference_tiny,
                                                                        backend):
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), vae=reference_tiny, safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    noise = np.random.default_rng(3).standard_normal((2, 4, H // 2, W // 2), dtype=np.float32)
    ref = pipe("a red cube", negative_prompt="blurry", num_inference_steps=8, guidance_scale=7.5,
               num_images_per_prompt=2, latents=torch.from_numpy(noise), height=H, width=W, output_type="np").images
    ours = Pipeline.load(tiny_artifact, backend=backend)
    got = ours("a red cube", negative_prompt="blurry", num_inference_steps=8, guidance_scale=7.5, sampler="ddim",
               init_noise=noise, height=H, width=W, decoder="tiny")
    assert got.images.shape == ref.shape and np.abs(got.images - ref).max() <= 2e-3
    assert got.info["decoder"] == "tiny"
    assert got.timings["engines"]["vae_decoder_tiny"]["calls"] == 1 and got.timings["engines"]["vae_decoder"]["calls"] == 0
    full = ours("a red cube", negative_prompt="blurry", num_inference_steps=8, init_noise=noise, height=H, width=W)
    assert full.timings["engines"]["vae_decoder"]["calls"] == 1 and np.abs(full.images - got.images).max() > 1e-2


def test_tiled_tiny_decode_seam_error(tiny_artifact):
    """The tiny decoder has no attention: tiles that overlap by a quarter differ from the whole
    decode only by the convolutions' border effects (figure recorded in docs/tiny-decoder.md)."""
    pipe = Pipeline.load(tiny_artifact, backend="onnxruntime")
    noise = np.random.default_rng(5).standard_normal((1, 4, 48, 48), dtype=np.float32)
    args = dict(num_inference_steps=2, init_noise=noise, height=96, width=96, decoder="tiny")
    whole = pipe("a cat", **args).images
    tiled = pipe("a cat", tile_size=32, **args).images
    err = np.abs(whole - tiled).max()
    assert 0 < err < 0.05, err


def test_tiny_decoder_errors(tiny_sd_dir, tiny_sd_artifact, tmp_path):
    from random_sd import build_random_tiny_vae

    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    with pytest.raises(EngineInputError, match="export --model sd --tiny-vae DIR"):
        pipe("a cat", num_inference_steps=1, height=H, width=W, decoder="tiny")
    with pytest.raises(EngineInputError, match="decoder: expected one of full, tiny, got 'taesd'"):
        pipe("a cat", num_inference_steps=1, height=H, width=W, decoder="taesd")
    result = run_cli("run", tiny_sd_artifact, "--prompt", "x", "--steps", "1", "--decoder", "tiny", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--tiny-vae DIR" in result.output and result.output.count("\n") == 1
    wide = build_random_tiny_vae(tmp_path / "taef1-like", latent_channels=16)
    with pytest.raises(ExportError, match="expected an AutoencoderTiny for this VAE's latent space \\(4 latent channels"):
        from edgegen.export import export_stable_diffusion
        export_stable_diffusion(tiny_sd_dir, tmp_path / "bad", tiny_vae=wide)
    assert not (tmp_path / "bad").exists()
    result = run_cli("export", "--model", "sd-unet", "--from", tiny_sd_dir, "--tiny-vae", wide, "--out", tmp_path / "b")
    assert result.exit_code == 1 and "--tiny-vae: applies to --model sd" in result.output
    result = run_cli("export", "--model", "sd", "--from", tiny_sd_dir, "--tiny-vae", tmp_path / "nothing",
                     "--out", tmp_path / "c")
    assert result.exit_code == 1 and "--tiny-vae" in result.output and not (tmp_path / "c").exists()


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32) / 255


def test_cli_decoder_tiny_and_previews_by_the_tiny_decoder(tiny_artifact, tmp_path):
    """Previews every 2 steps, by the tiny decoder where the artifact has one: the last preview (the
    last x0 estimate) is close to the final image (DDIM's last step moves x0 by alpha_0 = 0.99915)."""
    out = tmp_path / "o"
    result = run_cli("run", tiny_artifact, "--prompt", "a cat", "--steps", "6", "--num-images", "2",
                     "--batch-size", "1", "--preview-every", "2", "--decoder", "tiny", "--out", out)
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["image-0000.png", "image-0001.png"] + [f"preview-{i:04d}-step{s:02d}.png"
                                                            for i in (0, 1) for s in (2, 4, 6)]
    final, last = _png(out / "image-0001.png"), _png(out / "preview-0001-step06.png")
    assert last.shape == final.shape == (H, W, 3)
    assert Image.open(out / "image-0001.png").text["decoder"] == "tiny"
    assert psnr(final, last, data_range=1.0) > 30
    assert psnr(final, _png(out / "preview-0001-step02.png"), data_range=1.0) < psnr(final, last, data_range=1.0)
    result = run_cli("run", tiny_artifact, "--prompt", "x", "--preview-every", "0", "--out", tmp_path / "p")
    assert result.exit_code == 1 and "--preview-every: expected a number of steps >= 1, got 0" in result.output


def test_linear_preview_without_a_tiny_decoder(tiny_sd_artifact, tmp_path):
    """Without a tiny decoder previews are the linear projection fitted at export. Random-init weights
    (x0 std ~6, a VAE far from linear) make the fit loose: measured 11.0 dB and correlation 0.31
    against the f x f block means of its own final image, 10.2 dB and 0.12-0.14 against other seeds'."""
    out = tmp_path / "o"
    result = run_cli("run", tiny_sd_artifact, "--prompt", "a cat", "--steps", "6", "--seed", "1",
                     "--preview-every", "3", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["image-0000.png", "preview-0000-step03.png",
                                                      "preview-0000-step06.png"]
    last = _png(out / "preview-0000-step06.png")
    pipe = Pipeline.load(tiny_sd_artifact)
    own, other = (pipe("a cat", num_inference_steps=6, seed=seed, height=H, width=W).images[0] for seed in (1, 7))
    assert np.abs(own - _png(out / "image-0000.png")).max() <= 1 / 255 + 1e-6
    f = 2
    blocks = [im.reshape(H // f, f, W // f, f, 3).mean(axis=(1, 3)).repeat(f, 0).repeat(f, 1) for im in (own, other)]
    scores = [psnr(b, last, data_range=1.0) for b in blocks]
    corr = [np.corrcoef(b.ravel(), last.ravel())[0, 1] for b in blocks]
    assert scores[0] > 10 and scores[0] > scores[1] + 0.5 and corr[0] > 0.25 > 0.2 > corr[1], (scores, corr)
    with pytest.raises(EngineInputError, match="needs a vae_decoder_tiny component"):
        pipe.preview(np.zeros((1, 4, 8, 8), np.float32), method="tiny")


def test_preview_projection_is_fitted_when_the_manifest_has_none(tiny_artifact, tmp_path):
    import shutil

    from edgegen.artifact import atomic_artifact

    copy = tmp_path / "old"
    with atomic_artifact(copy) as (staging, manifest):
        for p in tiny_artifact.iterdir():
            if p.is_file() and p.name != "edgegen.json":
                shutil.copy(p, staging / p.name)
        manifest.update({k: v for k, v in json.loads((tiny_artifact / "edgegen.json").read_text()).items()
                         if k not in ("preview", "files", "created", "edgegen_version", "schema_version")})
    pipe, stored = Pipeline.load(copy, backend="onnxruntime"), Pipeline.load(tiny_artifact, backend="onnxruntime")
    x0 = np.random.default_rng(2).standard_normal((1, 4, 8, 8), dtype=np.float32)
    fitted, recorded = pipe.preview(x0, method="linear"), stored.preview(x0, method="linear")
    assert fitted.shape == (1, 16, 16, 3) and np.abs(fitted - recorded).max() < 1e-3


def test_cli_tiled_tiny_decode_at_another_size(tiny_artifact, tmp_path):
    """Off the artifact's size the CLI's memory check runs shape inference on the decoder that will
    decode (the tiny one here, at one tile)."""
    result = run_cli("run", tiny_artifact, "--prompt", "a cat", "--steps", "1", "--height", "64", "--width", "64",
                     "--decoder", "tiny", "--tile-size", "32", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "o" / "image-0000.png")).shape == (64, 64, 3)


def test_decoder_and_previews_are_refused_in_ray_jobs(tiny_sd_artifact, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n")
    for flags in (("--decoder", "tiny"), ("--preview-every", "2")):
        result = run_cli("run", tiny_sd_artifact, "--prompts", prompts, *flags, "--out", tmp_path / "o")
        assert result.exit_code == 1 and f"{flags[0]}: does not apply to --ray" in result.output, result.output
