"""INT8: calibration recorded from real inputs, quality gate with fallback, speed gate, determinism.

Figures checked are those of the INT8 issue; the thresholds the gates use are passed explicitly
where a test depends on them.
"""

import json

import numpy as np
import pytest

from conftest import lenet_scores, load_user_module, run_cli, shared

torch = pytest.importorskip("torch")
pytest.importorskip("nncf")

from edgegen import Pipeline  # noqa: E402
from edgegen.artifact import Artifact  # noqa: E402
from edgegen.calibration.record import record_diffusion  # noqa: E402


def gan_export(out, *extra):
    d = shared("mnist-gan-mlp")
    return run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "generator.ckpt", "--kind", "generator",
                   "--latent-shape", "64", "--image-shape", "1,28,28", "--out", out, *extra)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_gan_int8_quality(tmp_path, backend):
    """Median PSNR vs FP32 >= 35 dB for the same z; LeNet confidence over 512 samples within 0.01."""
    result = gan_export(tmp_path / "gan", "--int8", "--backend", backend, "--force-int8", "--min-psnr", "35")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "gan" / "edgegen.json").read_text())
    variant = manifest["components"]["generator"]["variants"]["int8"][backend]
    assert variant["calibration"] == {"seed": 0, "items": 64, "samples": 512, "sampler": None, "steps": None, "data": None}
    report = manifest["quantization"]["int8"]
    assert report["rounds"][-1]["failed"] == [] and report["speed"]["generator"]["kept"] == "int8"

    z = np.random.default_rng(123).standard_normal((512, 64), dtype=np.float32)
    fp32 = Pipeline.load(tmp_path / "gan", backend=backend)(latents=z).images
    int8_pipe = Pipeline.load(tmp_path / "gan", backend=backend, precision="int8")
    assert int8_pipe.precision == "int8"
    int8 = int8_pipe(latents=z).images
    psnr = 10 * np.log10(1 / np.mean((fp32 - int8) ** 2, axis=(1, 2, 3)))
    assert np.median(psnr) >= 35
    assert abs(lenet_scores(fp32)[0].mean() - lenet_scores(int8)[0].mean()) <= 0.01


def test_impossible_gate_fails_cleanly_and_keeps_previous_artifact(tmp_path):
    art = tmp_path / "gan"
    assert gan_export(art).exit_code == 0
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    result = gan_export(art, "--int8", "--min-psnr", "200")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors and "INT8 quality gate failed" in errors[0] and "< 200" in errors[0]
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan"]


def _encode_calibration_images(tmp_path):
    """TAEF2 latents of real photos shipped with scikit-image / scikit-learn (not the test photo)."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    d = shared("taef2")
    encoder = load_user_module(d / "model.py").load_encoder(str(d / "taef2_encoder.pth"))
    images = [getattr(skimage.data, n)()[..., :3] for n in ("astronaut", "coffee", "chelsea", "rocket")]
    images += list(load_sample_images().images)
    folder = tmp_path / "calibration"
    folder.mkdir()
    for i, image in enumerate(images):
        x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
        h, w = x.shape[2] // 8 * 8, x.shape[3] // 8 * 8
        with torch.no_grad():
            np.save(folder / f"{i:02d}.npy", encoder(x[:, :, :h, :w]).numpy())
    return folder, encoder


def test_taef2_int8_openvino_loses_at_most_0_3_db(tmp_path):
    """Decoding the held-out photo: INT8 PSNR vs the photo within 0.3 dB of FP32 (33.6 dB)."""
    from PIL import Image

    d = shared("taef2")
    calibration, encoder = _encode_calibration_images(tmp_path)
    result = run_cli("export", "--module", f"{d}/model.py:load_decoder", "--weights", d / "taef2_decoder.pth",
                     "--kind", "vae-decoder", "--latent-channels", "32", "--output-range", "0,1", "--int8",
                     "--calibration-data", calibration, "--min-psnr", "40", "--force-int8", "--out", tmp_path / "taef2")
    assert result.exit_code == 0, result.output
    photo = np.asarray(Image.open(d / "photo.jpg").convert("RGB"), dtype=np.float32) / 255
    with torch.no_grad():
        latents = encoder(torch.from_numpy(photo).permute(2, 0, 1)[None]).numpy()
    psnr = {}
    for precision in ("fp32", "int8"):
        image = Pipeline.load(tmp_path / "taef2", precision=precision)(latents=latents).images[0]
        psnr[precision] = 10 * np.log10(1 / np.mean((image - photo) ** 2))
    assert psnr["fp32"] == pytest.approx(33.58, abs=0.05)
    assert psnr["fp32"] - psnr["int8"] <= 0.3, psnr
    speed = json.loads((tmp_path / "taef2" / "edgegen.json").read_text())["quantization"]["int8"]["speed"]
    assert speed["vae_decoder"]["speedup"] > 1.0


def test_sd_int8_is_reproducible_and_reports_latency(tiny_sd_dir, tmp_path):
    args = ("export", "--model", "sd", "--from", tiny_sd_dir, "--int8", "--calibration-samples", "2",
            "--calibration-steps", "6", "--gate-samples", "1", "--force-int8")
    for name in ("a", "b"):
        result = run_cli(*args, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    a, b = (tmp_path / n / "unet.int8.bin" for n in "ab")
    assert a.read_bytes() == b.read_bytes()
    report = json.loads((tmp_path / "a" / "edgegen.json").read_text())["quantization"]["int8"]
    assert set(report["speed"]) == {"text_encoder", "unet", "vae_decoder"}
    for figures in report["speed"].values():
        assert figures["fp32"]["median_s"] > 0 and figures["int8"]["median_s"] > 0 and figures["speedup"] > 0
    assert len(report["rounds"][-1]["figures"]["step_rel_error"]) == 6
    result = run_cli("run", tmp_path / "a", "--prompt", "a cat", "--steps", "3", "--precision", "int8",
                     "--out", tmp_path / "img")
    assert result.exit_code == 0 and "precision int8" in result.output, result.output


def test_speed_gate_keeps_fp32_when_int8_is_slower(tmp_path):
    """The 600k-param DDPM U-Net at batch 1 is slower in INT8 on CPU: FP32 is kept and said so."""
    d = shared("ddpm-mnist")
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "ddpm_mnist.pt", "--kind", "unet",
                     "--sample-shape", "1,28,28", "--scheduler-config", d / "scheduler_config.json", "--int8",
                     "--calibration-samples", "2", "--calibration-steps", "10", "--gate-samples", "2",
                     "--out", tmp_path / "ddpm")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "ddpm" / "edgegen.json").read_text())
    speed = manifest["quantization"]["int8"]["speed"]["unet"]
    if speed["speedup"] <= 1.0:
        assert speed["kept"] == "fp32" and "int8" not in manifest["components"]["unet"].get("variants", {}).get("int8", {})
        assert "keeping FP32" in result.output
        assert not list((tmp_path / "ddpm").glob("unet.int8.*"))


def test_calibration_recording_is_seeded(tiny_sd_artifact):
    art = Artifact.load(tiny_sd_artifact)
    first = record_diffusion(art, samples=2, sampler="euler-a", steps=3, seed=5, height=32, width=32)
    again = record_diffusion(art, samples=2, sampler="euler-a", steps=3, seed=5, height=32, width=32)
    assert [len(first[k]) for k in ("text_encoder", "unet", "vae_decoder")] == [4, 6, 2]
    assert first["unet"][0]["sample"].shape[0] == 2  # both CFG branches in one feed
    for component in first:
        for x, y in zip(first[component], again[component]):
            for name in x:
                np.testing.assert_array_equal(x[name], y[name])


def test_ddpm_int8_lenet_confidence(tmp_path):
    """DDIM 50 on the same noise, 256 samples: LeNet mean confidence of INT8 within 0.02 of FP32.

    The default gate (30 dB median PSNR vs FP32) keeps the layers it must in FP32 on its own."""
    d = shared("ddpm-mnist")
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "ddpm_mnist.pt", "--kind", "unet",
                     "--sample-shape", "1,28,28", "--scheduler-config", d / "scheduler_config.json", "--int8",
                     "--calibration-steps", "50", "--force-int8", "--out", tmp_path / "ddpm")
    assert result.exit_code == 0, result.output
    conf = {}
    for precision in ("fp32", "int8"):
        images = Pipeline.load(tmp_path / "ddpm", precision=precision)(num_inference_steps=50, sampler="ddim",
                                                                        num_images=256, seed=0).images
        conf[precision] = lenet_scores(images)[0].mean()
    assert abs(conf["fp32"] - conf["int8"]) <= 0.02, conf
    variant = json.loads((tmp_path / "ddpm" / "edgegen.json").read_text())["components"]["unet"]["variants"]["int8"]
    assert 0 < len(variant["openvino"]["excluded_layers"]) < 65


def _digest(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_quantize_twice_gives_two_artifacts_and_leaves_the_first_alone(tmp_path):
    """`edgegen quantize ART --out` with two thresholds: the input and the first output are untouched
    by the second run (bytes compared); `--out` equal to ART then replaces it atomically."""
    art = tmp_path / "gan"
    assert gan_export(art).exit_code == 0
    fp32 = _digest(art)
    common = ("--backend", "onnxruntime", "--calibration-samples", "64", "--gate-samples", "16", "--force-int8")
    first = run_cli("quantize", art, "--out", tmp_path / "q20", "--min-psnr", "20", *common)
    assert first.exit_code == 0, first.output
    q20 = _digest(tmp_path / "q20")
    second = run_cli("quantize", art, "--out", tmp_path / "q30", "--min-psnr", "30", *common)
    assert second.exit_code == 0, second.output
    assert _digest(art) == fp32 and _digest(tmp_path / "q20") == q20
    thresholds = {name: json.loads((tmp_path / name / "edgegen.json").read_text())["quantization"]["int8"]["thresholds"]
                  for name in ("q20", "q30")}
    assert thresholds["q20"]["min_psnr"] == 20 and thresholds["q30"]["min_psnr"] == 30
    assert (tmp_path / "q30" / "generator.int8.qdq.onnx").is_file()
    assert q20["generator.onnx"] == fp32["generator.onnx"]  # the FP32 model is carried over unchanged
    # in place: a failing gate leaves the artifact as it was, a passing one replaces it
    assert run_cli("quantize", tmp_path / "q20", "--min-psnr", "200", *common).exit_code == 1
    assert _digest(tmp_path / "q20") == q20
    again = run_cli("quantize", tmp_path / "q20", "--min-psnr", "25", *common)
    assert again.exit_code == 0, again.output
    manifest = json.loads((tmp_path / "q20" / "edgegen.json").read_text())
    assert manifest["quantization"]["int8"]["thresholds"]["min_psnr"] == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan", "q20", "q30"]


def test_engine_hook_records_feeds_given_at_construction(tiny_sd_artifact):
    """Calibration records through a hook the pipeline is built with (nothing swapped afterwards)."""
    from edgegen.calibration.record import FeedRecorder

    recorder = FeedRecorder()
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime", engine_hook=recorder)
    pipe("a cat", num_inference_steps=3, height=32, width=32, seed=0)
    assert [len(recorder.feeds[c]) for c in ("text_encoder", "unet", "vae_decoder")] == [2, 3, 1]
    assert recorder.feeds["unet"][0]["sample"].shape == (2, 4, 16, 16)
    recorder.clear()
    recorder.stop()
    pipe("a cat", num_inference_steps=2, height=32, width=32, seed=0)
    assert all(len(v) == 0 for v in recorder.feeds.values())


def test_a_non_finite_int8_candidate_fails_its_round_instead_of_stopping_the_export():
    """An INT8 round whose engines give NaN / Inf is judged like any failed round (so the fallback
    moves layers to float), with the non-finite tensor named in the round's failures."""
    from edgegen.calibration.gates import QualityThresholds, judge

    figures = {"psnr_db": {"median": 0.0, "mean": 0.0, "min": 0.0}, "ssim": {"mean": 0.0, "min": 0.0}, "images": 0,
               "nonfinite": "engine 'unet.int8.onnx' (onnxruntime): output 'noise_pred' has 3 NaN"}
    failed = judge(figures, QualityThresholds(30.0, 0.9, None))
    assert failed[0].startswith("INT8 output not finite: engine 'unet.int8.onnx'"), failed
    assert len(failed) == 3  # and the PSNR / SSIM criteria it cannot meet
