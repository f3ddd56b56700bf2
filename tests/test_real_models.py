"""Real trained checkpoints from ../shared/models, exported and run through the numpy runtime.

Each test states the figure it checks; the facts come from shared/models/README.md.
"""

import numpy as np
import pytest

from conftest import lenet_scores, load_user_module, run_cli, shared

torch = pytest.importorskip("torch")

from edgegen import Pipeline  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_ddpm_mnist_digits_are_recognised(tmp_path):
    """DDPM 100 steps with clip_sample: LeNet mean confidence >= 0.8 over 64 digits (diffusers: 0.87/256)."""
    d = shared("ddpm-mnist")
    art, out = tmp_path / "ddpm", tmp_path / "digits"
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "ddpm_mnist.pt", "--kind", "unet",
                     "--sample-shape", "1,28,28", "--timestep-dtype", "int64",
                     "--scheduler-config", d / "scheduler_config.json", "--out", art)
    assert result.exit_code == 0, result.output
    result = run_cli("run", art, "--sampler", "ddpm", "--steps", "100", "--num-images", "64", "--seed", "0",
                     "--out", out)
    assert result.exit_code == 0, result.output
    from PIL import Image

    files = sorted(out.glob("*.png"))
    assert len(files) == 64
    digits = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255 for f in files])
    confidence, classes = lenet_scores(digits)
    assert confidence.mean() >= 0.8, f"LeNet mean confidence {confidence.mean():.3f}"
    assert len(set(classes.tolist())) >= 8  # not one digit over and over


def test_taef2_decoder_reproduces_pytorch_psnr(tmp_path):
    """Decoding the photo's latents: PSNR vs the photo within 0.05 dB of PyTorch's (33.6 dB)."""
    from PIL import Image

    d = shared("taef2")
    model = load_user_module(d / "model.py")
    photo = np.asarray(Image.open(d / "photo.jpg").convert("RGB"), dtype=np.float32) / 255
    x = torch.from_numpy(photo).permute(2, 0, 1)[None]
    with torch.no_grad():
        latents = model.load_encoder(str(d / "taef2_encoder.pth"))(x)
        reference = model.load_decoder(str(d / "taef2_decoder.pth"))(latents).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    reference_psnr = psnr(reference, photo)
    assert reference_psnr == pytest.approx(33.6, abs=0.1)

    result = run_cli("export", "--module", f"{d}/model.py:load_decoder", "--weights", d / "taef2_decoder.pth",
                     "--kind", "vae-decoder", "--latent-channels", "32", "--output-range", "0,1",
                     "--out", tmp_path / "taef2")
    assert result.exit_code == 0, result.output
    for backend in ("openvino", "onnxruntime"):
        decoded = Pipeline.load(tmp_path / "taef2", backend=backend)(latents=latents.numpy()).images[0]
        assert abs(psnr(decoded, photo) - reference_psnr) <= 0.05, backend


def test_gan_generator_matches_pytorch(tmp_path):
    """MLP GAN generator: images equal to PyTorch's within 1e-4 for the same z."""
    d = shared("mnist-gan-mlp")
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "generator.ckpt",
                     "--kind", "generator", "--latent-shape", "64", "--image-shape", "1,28,28",
                     "--output-range", "-1,1", "--out", tmp_path / "gan")
    assert result.exit_code == 0, result.output
    z = np.random.default_rng(5).standard_normal((32, 64), dtype=np.float32)
    with torch.no_grad():
        net = load_user_module(d / "model.py").load(str(d / "generator.ckpt"))
        reference = ((net(torch.from_numpy(z)).reshape(32, 28, 28, 1) + 1) / 2).clamp(0, 1).numpy()
    for backend in ("openvino", "onnxruntime"):
        images = Pipeline.load(tmp_path / "gan", backend=backend)(latents=z).images
        assert np.abs(images - reference).max() <= 1e-4, backend
    confidence, _ = lenet_scores(Pipeline.load(tmp_path / "gan")(num_images=256, seed=1).images)
    assert confidence.mean() >= 0.9


def test_mlp_vae_decoder_digits(tmp_path):
    """MLP VAE decoder exported as a z -> image generator: LeNet mean confidence >= 0.8 (README: 0.86)."""
    d = shared("mnist-vae-mlp")
    result = run_cli("export", "--module", f"{d}/model.py:load_decoder", "--weights", d / "vae.pth",
                     "--kind", "generator", "--latent-shape", "20", "--image-shape", "1,28,28",
                     "--output-range", "0,1", "--out", tmp_path / "vae")
    assert result.exit_code == 0, result.output
    confidence, _ = lenet_scores(Pipeline.load(tmp_path / "vae")(num_images=500, seed=0).images)
    assert confidence.mean() >= 0.8
