"""Tiled VAE decoding (edgegen.tiling): exact blending math, and seams on the real TAEF2 decoder.

Seam figures (TAEF2, the photo's 768x768 centre crop, OpenVINO FP32, measured 2026-11-23):
tile 512 px (overlap 128 px): max abs 0.124, mean abs 0.0071 vs the untiled decode (images in
[0, 1]); tile 256 px: max 0.58, mean 0.020. Widening the overlap to 1/2 tile or zeroing the
outer quarter of each overlap changes these by < 10%: the error is the decoder's receptive field
(wider than a 256 px tile), not the blend. Tolerances below are those figures plus ~20%.
"""

import numpy as np
import pytest

from conftest import load_user_module, run_cli, shared
from edgegen import Pipeline
from edgegen.errors import InputError
from edgegen.tiling import decode_tiled, tile_starts


def pointwise(x: np.ndarray) -> np.ndarray:
    """A decoder with a 1-latent receptive field: tiling it must be exact up to float rounding."""
    y = np.tanh(np.einsum("oc,bchw->bohw", np.linspace(-1, 1, 3 * x.shape[1]).reshape(3, -1), x))
    return y.repeat(8, axis=2).repeat(8, axis=3).astype(np.float32)


@pytest.mark.parametrize("shape", [(2, 4, 37, 53), (1, 4, 16, 16), (1, 4, 9, 40)])
@pytest.mark.parametrize("tile", [64, 96, 128])
def test_blending_is_exact_for_a_local_decoder(shape, tile):
    latents = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    np.testing.assert_allclose(decode_tiled(pointwise, latents, tile_size=tile, scale_factor=8),
                               pointwise(latents), atol=2e-6)


def test_tiles_cover_with_the_overlap():
    for size, tile, lap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (10, 32, 8), (200, 64, 16)]:
        starts = tile_starts(size, tile, lap)
        assert starts[0] == 0 and starts[-1] + min(tile, size) == size
        assert all(b - a <= tile - lap for a, b in zip(starts, starts[1:]))


def test_tile_size_is_checked():
    latents = np.zeros((1, 4, 8, 8), np.float32)
    for bad in (0, -8, 12, 8.0, True):
        with pytest.raises(InputError, match="tile_size: expected a positive multiple of the scale factor 8"):
            decode_tiled(pointwise, latents, tile_size=bad, scale_factor=8)


@pytest.fixture(scope="module")
def taef2(tmp_path_factory):
    """(TAEF2 artifact, (1, 32, 96, 96) latents of the photo's 768x768 centre crop)."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    d = shared("taef2")
    art = tmp_path_factory.mktemp("tiles") / "taef2"
    result = run_cli("export", "--module", f"{d}/model.py:load_decoder", "--weights", d / "taef2_decoder.pth",
                     "--kind", "vae-decoder", "--latent-channels", "32", "--output-range", "0,1", "--out", art)
    assert result.exit_code == 0, result.output
    photo = np.asarray(Image.open(d / "photo.jpg").convert("RGB"), dtype=np.float32)[:, 640:1408] / 255
    with torch.no_grad():
        encoder = load_user_module(d / "model.py").load_encoder(str(d / "taef2_encoder.pth"))
        latents = encoder(torch.from_numpy(photo).permute(2, 0, 1)[None]).numpy()
    return art, latents


def test_taef2_tiled_decode_seams(taef2):
    art, latents = taef2
    pipe = Pipeline.load(art, backend="openvino")
    whole = pipe(latents=latents).images
    tiled = pipe(latents=latents, tile_size=512).images
    error = np.abs(tiled - whole)
    assert error.max() <= 0.15 and error.mean() <= 0.0085, (error.max(), error.mean())
    np.testing.assert_array_equal(pipe(latents=latents, tile_size=768).images, whole)  # one tile: untiled
    np.testing.assert_array_equal(pipe(latents=latents, tile_size=1024).images, whole)


def test_cli_tile_size(taef2, tmp_path):
    art, latents = taef2
    np.save(tmp_path / "lat.npy", latents[:, :, :32, :48])
    result = run_cli("run", art, "--latents", tmp_path / "lat.npy", "--tile-size", "128", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "o").glob("*.png"))) == 1
    result = run_cli("run", art, "--latents", tmp_path / "lat.npy", "--tile-size", "100", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "--tile-size: expected a positive multiple of 8" in result.output


def test_stable_diffusion_tiled_decode(tiny_sd_artifact):
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    options = dict(num_inference_steps=2, seed=3, height=128, width=96)
    whole = pipe("a cat", **options).images
    np.testing.assert_array_equal(pipe("a cat", tile_size=128, **options).images, whole)
    # random-init VAE (scale factor 2), tile 64 px = 32 latents: measured max 0.030, mean 0.0045
    error = np.abs(pipe("a cat", tile_size=64, **options).images - whole)
    assert error.max() <= 0.04 and error.mean() <= 0.006, (error.max(), error.mean())
    with pytest.raises(InputError, match="tile_size: expected a positive multiple of the scale factor 2"):
        pipe("a cat", tile_size=63, **options)


def test_memory_check_counts_on_automatic_tiling(taef2, monkeypatch):
    """8192x8192 untiled needs tens of GiB of decoder activations, but the pipeline tiles a decode
    that would not fit (edgegen.pipelines.budget): in 8 GiB it passes, tiled or not; in 1 GiB even
    the blended image (2 GiB with its [0, 1] copy) does not fit and it is refused."""
    from edgegen.artifact import Artifact
    import importlib

    run = importlib.import_module("edgegen.cli.run")

    monkeypatch.setattr(run, "_available_memory", lambda: 8 << 30)
    art = Artifact.load(taef2[0])
    run._check_memory(art, (8192, 8192), 1, "openvino")
    run._check_memory(art, (8192, 8192), 1, "openvino", tile_size=512)
    monkeypatch.setattr(run, "_available_memory", lambda: 1 << 30)
    with pytest.raises(InputError, match="use a smaller size or --batch-size, or --memory low"):
        run._check_memory(art, (8192, 8192), 1, "openvino")
