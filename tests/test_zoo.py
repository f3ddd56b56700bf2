"""The bundled models trained by edgegen on scikit-learn's digits, exported and run by the runtime.

The quality figures are measured by the bundled digit classifier (exported to ONNX).
"""

import json

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edgegen import Pipeline  # noqa: E402
from edgegen.demo import ZOO, class_agreement, export_zoo  # noqa: E402
from edgegen.metrics import classify  # noqa: E402
from edgegen.runtimes import load_engine  # noqa: E402

if not (ZOO / "cond_unet.safetensors").is_file():
    pytest.skip("bundled weights not trained yet", allow_module_level=True)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    arts = export_zoo(tmp_path_factory.mktemp("zoo"), int8=False)
    return arts, load_engine(arts["classifier"], "onnxruntime")


def _guidance_study(zoo, per_class: int) -> dict[float, float]:
    """Agreement of the bundled classifier with the requested digit at guidance 3, 1 and 0."""
    arts, classifier = zoo
    pipe = Pipeline.load(arts["digits-diffusion"])
    agreement = {}
    for w in (3.0, 1.0, 0.0):
        figures = class_agreement(pipe, classifier, guidance_scale=w, per_class=per_class)
        agreement[w] = figures["agreement"]
        print(f"guidance {w}: agreement {agreement[w]:.3f}, per class {figures['per_class']}")
    return agreement


def test_guidance_makes_the_requested_digit(zoo):
    """DDIM 50 steps, 100 samples (10 per digit, seeded): guidance 3 >= 90% classified as the
    requested digit, markedly fewer with the conditional branch alone (w=1), chance level with the
    unconditional branch alone (w=0). The 200-sample study of the model card is the slow test below.

    Measured 2026-11-23 (this runtime, 100 samples, seed 0): w=3 100%, w=1 86% (per digit 60-100%),
    w=0 11%. About 95 s on 2 cores.
    """
    agreement = _guidance_study(zoo, per_class=10)
    assert agreement[3.0] >= 0.9
    assert agreement[1.0] <= agreement[3.0] - 0.1, agreement
    assert agreement[0.0] <= 0.3


@pytest.mark.slow
def test_guidance_makes_the_requested_digit_200_samples(zoo):
    """The issue's goal on 200 samples (20 per digit), as in MODEL_CARDS.md.

    Measured 2026-11-21 (this runtime, 200 samples): w=3 99.5% (per digit 95-100%), w=1 85.5%
    (per digit 65-100%; 3 and 8 at 65%), w=0 10%. About 5 min on 2 cores, so not in the default run.
    """
    agreement = _guidance_study(zoo, per_class=20)
    assert agreement[3.0] >= 0.9
    assert agreement[1.0] <= agreement[3.0] - 0.1, agreement
    assert agreement[0.0] <= 0.3


def test_guidance_interval_limits_the_guided_steps(zoo):
    """An interval no step's sigma falls in is the conditional branch alone, image for image; a
    partial interval differs from both (Kynkäänniemi et al. 2024)."""
    arts, _ = zoo
    pipe = Pipeline.load(arts["digits-diffusion"])
    labels = np.arange(10)

    def sample(w, interval):
        return pipe(class_label=labels, num_images=10, num_inference_steps=20, sampler="ddim", guidance_scale=w,
                    seed=1, guidance_interval=interval).images

    unguided, guided = sample(1.0, None), sample(3.0, None)
    np.testing.assert_array_equal(sample(3.0, (0.0, 1e-4)), unguided)
    partial = sample(3.0, (0.0, 1.25))
    assert np.abs(partial - unguided).max() > 0.05 and np.abs(partial - guided).max() > 0.05


def test_class_label_as_prompt_on_the_cli(zoo, tmp_path):
    arts, classifier = zoo
    result = run_cli("run", arts["digits-diffusion"], "--prompt", "7", "--guidance-scale", "3", "--steps", "30",
                     "--sampler", "ddim", "--num-images", "8", "--out", tmp_path / "sevens")
    assert result.exit_code == 0, result.output
    from PIL import Image

    files = sorted((tmp_path / "sevens").glob("*.png"))
    images = np.stack([np.asarray(Image.open(f), np.float32)[..., None] / 255 for f in files])
    assert set(Image.open(files[0]).text["class_labels"].split(",")) == {"7"}
    assert (classify(classifier, images).classes == 7).mean() >= 0.75
    result = run_cli("run", arts["digits-diffusion"], "--class-label", "3", "--guidance-interval", "0,1.25", "--steps",
                     "10", "--num-images", "1", "--out", tmp_path / "three")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "three" / "image-0000.png").text["guidance_interval"] == "[0.0, 1.25]"
    from edgegen.atomic import umask_mode

    assert all(f.stat().st_mode & 0o777 == umask_mode() for f in files)  # not mkstemp's 0600
    assert "guidance_interval" not in Image.open(files[0]).text  # the bundled artifact guides every step
    result = run_cli("run", arts["digits-diffusion"], "--prompt", "a cat", "--out", tmp_path / "x")
    assert result.exit_code == 1 and "expected one of them" in result.output


@pytest.mark.parametrize("name", ["digits-dcgan", "digits-vae"])
def test_gan_and_vae_samples_are_digits(zoo, name):
    arts, classifier = zoo
    scores = classify(classifier, Pipeline.load(arts[name])(num_images=256, seed=0).images)
    assert scores.confidence.mean() >= 0.8, scores.confidence.mean()
    assert len(set(scores.classes.tolist())) >= 8


def test_model_cards_record_recipe_and_losses():
    for name in ("cond_unet", "dcgan", "vae", "classifier"):
        card = json.loads((ZOO / f"{name}.json").read_text())
        assert card["seed"] == 0 and card["data"]["source"] == "sklearn.datasets.load_digits"
        assert card["data"]["train"] + card["data"]["test"] == 1797
        assert any(k.startswith("final") for k in card)
    assert json.loads((ZOO / "classifier.json").read_text())["test_accuracy"] >= 0.95


def _training():
    """The training recipes (benchmarks/zoo/training.py: outside the package)."""
    from pathlib import Path

    from conftest import load_user_module

    return load_user_module(Path(__file__).resolve().parents[1] / "benchmarks" / "zoo" / "training.py")


def test_training_is_deterministic():
    training = _training()
    data = training.digits(0)
    _, a = training.train_vae(data, steps=30, seed=3)
    _, b = training.train_vae(data, steps=30, seed=3)
    assert a["final_loss"] == b["final_loss"]


@pytest.mark.slow
def test_retraining_reproduces_recorded_losses(tmp_path):
    """The issue's goal: same seed, recorded losses to 3 significant figures. Measured 2026-11-21
    (`python benchmarks/zoo/train.py --out DIR`, 2 threads): all four models 16 min in all (U-Net 11.6,
    DCGAN 2.1, VAE 1.5, classifier 0.8) with weights bitwise identical to the shipped ones."""
    cards = _training().train_all(tmp_path, seed=0)
    for name, card in cards.items():
        recorded = json.loads((ZOO / f"{name}.json").read_text())
        for key, value in card.items():
            if key.startswith("final"):
                assert f"{value:.3g}" == f"{recorded[key]:.3g}", (name, key)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    result = run_cli("demo", "--out", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["models"]["digits-diffusion"]["fp32"]["agreement"] >= 0.9
    assert (tmp_path / "demo" / "bench" / "report.html").is_file()


def test_export_records_a_guidance_interval(tmp_path):
    """`edgegen export --num-classes N --guidance-interval LO,HI` records the interval; `run` applies it
    by default and `--guidance-interval all` overrides it; without --num-classes it is refused."""
    from PIL import Image

    config = tmp_path / "scheduler_config.json"
    config.write_text(json.dumps(json.loads((ZOO / "cond_unet.json").read_text())["scheduler_config"]))
    common = ["export", "--module", str(ZOO.parent / "export" / "zoo.py") + ":load_cond_unet", "--weights",
              ZOO / "cond_unet.safetensors", "--kind", "unet", "--sample-shape", "1,32,32", "--scheduler-config", config,
              "--guidance-interval", "0,1.25"]
    result = run_cli(*common, "--out", tmp_path / "plain")
    assert result.exit_code == 1 and "expected with --num-classes N" in result.output
    result = run_cli(*common, "--num-classes", "10", "--out", tmp_path / "art")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "art" / "edgegen.json").read_text())
    assert manifest["conditioning"]["guidance_interval"] == [0.0, 1.25]
    for flag, expected in (([], "[0.0, 1.25]"), (["--guidance-interval", "all"], None)):
        out = tmp_path / f"run{len(flag)}"
        result = run_cli("run", tmp_path / "art", "--class-label", "5", "--steps", "5", "--num-images", "1",
                         "--out", out, *flag)
        assert result.exit_code == 0, result.output
        assert Image.open(out / "image-0000.png").text.get("guidance_interval") == expected
