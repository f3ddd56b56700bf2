"""edgegen.metrics against the references it claims to match (scikit-image, scipy, closed forms)."""

import numpy as np
import pytest

from edgegen import metrics
from edgegen.errors import EdgegenError, MissingDependencyError


def _images(seed=0, shape=(4, 16, 16, 3)):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    return a, np.clip(a + rng.normal(0, 0.05, shape), 0, 1)


def test_psnr_equals_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _images()
    assert metrics.psnr(a, b, data_range=1.0) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0), abs=1e-9)
    assert metrics.psnr(a, a, data_range=1.0) == float("inf")


def test_image_figures_cap_identical_images_and_match_scikit_image_ssim():
    from skimage.metrics import structural_similarity

    a, b = _images()
    same = metrics.image_figures(list(a), list(a))
    assert same["psnr_db"]["median"] == metrics.PSNR_CAP_DB and same["ssim"]["min"] == pytest.approx(1.0)
    figures = metrics.image_figures(list(a), list(b))
    expected = np.mean([structural_similarity(x, y, data_range=1.0, channel_axis=-1) for x, y in zip(a, b)])
    assert figures["ssim"]["mean"] == pytest.approx(expected, abs=1e-12) and figures["images"] == 4
    with pytest.raises(EdgegenError, match="equally long"):
        metrics.image_figures(list(a), list(b[:2]))


@pytest.mark.parametrize("side", [3, 4, 5, 6])
def test_ssim_fits_its_window_to_small_images(side):
    a, b = _images(shape=(side, side, 1))
    assert -1 <= metrics.ssim(a, b) <= 1
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_error_figures():
    ref = np.array([0.0, 1.0, -2.0], np.float32)
    fig = metrics.error_figures(ref, ref + np.float32(0.5))
    assert fig["max_abs"] == 0.5 and fig["max_rel"] == 0.25 and fig["finite"]
    assert fig["psnr_db"] == pytest.approx(10 * np.log10(3.0**2 / 0.25))
    assert metrics.error_figures(ref, ref)["psnr_db"] is None
    assert not metrics.error_figures(ref, np.array([0, np.nan, 0], np.float32))["finite"]
    with pytest.raises(EdgegenError, match=r"expected \(3,\), got \(2,\)"):
        metrics.error_figures(ref, ref[:2])


def test_softmax_is_stable_and_normalized():
    probs = metrics.softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]], atol=1e-12)
    assert probs.dtype == np.float64


def test_frechet_distance_of_shifted_gaussians():
    """Equal covariances: the distance is |mu_a - mu_b|^2 alone (here 4 * 0.5^2 = 1)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + 0.5
    assert metrics.frechet_distance(a, b) == pytest.approx(1.0, abs=0.05)
    assert abs(metrics.frechet_distance(a, a)) < 1e-6
    with pytest.raises(EdgegenError, match="N, M >= 2"):
        metrics.frechet_distance(a[:1], b)


def test_agreement_per_class():
    figures = metrics.agreement(np.array([1, 1, 2, 0]), np.array([1, 2, 2, 0]))
    assert figures == {"agreement": 0.75, "per_class": {"0": 1.0, "1": 1.0, "2": 0.5}}


def test_classify_with_a_real_engine_resizes_and_repeats_channels(tmp_path):
    """A real ONNX Runtime session: mean over (C, H, W) of a 3x8x8 input -> logits [x, -x], features."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgegen.runtimes import load_engine

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Neg", ["m"], ["n"]),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Unsqueeze", ["n", "one"], ["n1"]),
             helper.make_node("Concat", ["m1", "n1"], ["logits"], axis=1),
             helper.make_node("Flatten", ["images"], ["features"])]
    graph = helper.make_graph(nodes, "cls", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["b", 3, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2]),
                               helper.make_tensor_value_info("features", TensorProto.FLOAT, ["b", 192])],
                              [helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "cls.onnx")
    engine = load_engine(tmp_path / "cls.onnx", "onnxruntime")
    images = np.stack([np.full((16, 16, 1), 0.9, np.float32), np.full((16, 16, 1), 0.0, np.float32)])
    scores = metrics.classify(engine, images)
    assert scores.classes.tolist() == [0, 0] and scores.features.shape == (2, 192)
    assert scores.confidence[0] == pytest.approx(1 / (1 + np.exp(-1.8)), rel=1e-5)
    assert scores.confidence[1] == pytest.approx(0.5)
    with pytest.raises(EdgegenError, match="3-channel images, got 2-channel"):
        metrics.classify(engine, np.zeros((1, 8, 8, 2), np.float32))


def test_missing_scikit_image_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skimage.metrics", None)  # `import skimage.metrics` now fails
    a, b = _images()
    with pytest.raises(MissingDependencyError, match=r"SSIM needs 'scikit-image'.*pip install 'edgegen\[metrics\]'"):
        metrics.ssim(a[0], b[0])
