"""Engines on real OpenVINO and ONNX Runtime sessions over small graphs built with onnx.helper."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgegen.errors import BackendUnavailableError, EngineInputError, EngineLoadError  # noqa: E402
from edgegen.runtimes import available_backends, default_backend, load_engine  # noqa: E402


@pytest.fixture(scope="module")
def matmul_model(tmp_path_factory):
    """y = tanh(x @ W) + t[:, None]; x (batch, 8) float32, t (batch,) float32."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("W", TensorProto.FLOAT, (8, 4), rng.standard_normal((8, 4)).astype(np.float32).ravel())
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Tanh", ["h"], ["a"]),
             helper.make_node("Unsqueeze", ["t", "axes"], ["t2"]), helper.make_node("Add", ["a", "t2"], ["y"])]
    axes = helper.make_tensor("axes", TensorProto.INT64, (1,), [1])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
                                           helper.make_tensor_value_info("t", TensorProto.FLOAT, ["batch"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("m") / "m.onnx"
    onnx.save(model, str(path))
    return path, w


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_engine_runs_and_reports_io(matmul_model, backend):
    path, _ = matmul_model
    engine = load_engine(path, backend)
    assert [s.name for s in engine.inputs] == ["x", "t"] and [s.name for s in engine.outputs] == ["y"]
    x = np.random.default_rng(1).standard_normal((3, 8), dtype=np.float32)
    t = np.arange(3, dtype=np.float32)
    out = engine({"x": x, "t": t})
    w = onnx.numpy_helper.to_array(matmul_model[1])
    np.testing.assert_allclose(out["y"], np.tanh(x @ w) + t[:, None], atol=1e-5)
    again = engine({"x": x, "t": t})
    assert again["y"] is not out["y"]  # outputs belong to the caller
    out["y"][:] = 0
    assert np.abs(again["y"]).sum() > 0


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_bad_feeds_name_expected_and_received(matmul_model, backend):
    engine = load_engine(matmul_model[0], backend)
    x, t = np.zeros((2, 8), np.float32), np.zeros(2, np.float32)
    with pytest.raises(EngineInputError, match=r"expected inputs \['t', 'x'\], got \['x'\]"):
        engine({"x": x})
    with pytest.raises(EngineInputError, match=r"input 'x' expects float32 \((batch|\?), 8\), got float64 \(2, 8\)"):
        engine({"x": x.astype(np.float64), "t": t})
    with pytest.raises(EngineInputError, match=r"input 'x' expects float32 \((batch|\?), 8\), got float32 \(2, 5\)"):
        engine({"x": np.zeros((2, 5), np.float32), "t": t})


def test_shared_symbolic_dims_are_checked(matmul_model):
    engine = load_engine(matmul_model[0], "onnxruntime")
    with pytest.raises(EngineInputError, match="dim 'batch' is 3 but input 'x' gave it 2"):
        engine({"x": np.zeros((2, 8), np.float32), "t": np.zeros(3, np.float32)})


def test_openvino_fp32_engine_computes_in_f32_and_bf16_on_request(matmul_model):
    from edgegen.runtimes.openvino import OpenVinoEngine

    assert OpenVinoEngine(matmul_model[0]).inference_precision == "f32"
    bf16 = OpenVinoEngine(matmul_model[0], precision="bf16")
    assert bf16.precision == "bf16" and bf16.inference_precision in ("bf16", "f32")  # f32 where the CPU lacks BF16


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_unloadable_model_is_one_typed_error(tmp_path, backend):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(EngineLoadError, match=f"{backend} could not load '.*bad.onnx'"):
        load_engine(bad, backend)


def test_default_backend_and_unknown_backend(matmul_model):
    assert default_backend() == "openvino" and "onnxruntime" in available_backends()
    with pytest.raises(BackendUnavailableError, match="backend 'nope' is not available"):
        load_engine(matmul_model[0], "nope")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider is not in this onnxruntime build"):
        load_engine(matmul_model[0], "onnxruntime", device="cuda")


@pytest.fixture(scope="module")
def divide_model(tmp_path_factory):
    """y = x / d, both (batch, 4) float32: d = 0 gives Inf (x != 0) or NaN (x = 0) from finite feeds."""
    graph = helper.make_graph([helper.make_node("Div", ["x", "d"], ["y"])], "div",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                               helper.make_tensor_value_info("d", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("div") / "div.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_nonfinite_output_names_engine_tensor_and_first_index(divide_model, backend):
    from edgegen.errors import NonFiniteError

    engine = load_engine(divide_model, backend)
    x = np.ones((2, 4), np.float32)
    x[0, :2] = 0
    d = np.ones((2, 4), np.float32)
    d[0, :3] = 0  # 0/0, 0/0, 1/0
    with pytest.raises(NonFiniteError, match=rf"engine 'div.onnx' \({backend}\): output 'y' expects finite values, "
                                             r"got 2 NaN and 1 Inf of 8 values, first at \(0, 0\) "
                                             r"\(the engine computed it from finite inputs\)") as info:
        engine({"x": x, "d": d})
    assert (info.value.component, info.value.tensor, info.value.role) == (f"engine 'div.onnx' ({backend})", "y", "output")
    assert "at step 4/20" in str(info.value.at_step(4, 20))
    assert np.isnan(load_engine(divide_model, backend, check_finite=False)({"x": x, "d": d})["y"][0, 0])


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_nonfinite_feed_is_refused_before_the_engine_runs(divide_model, backend):
    from edgegen.errors import NonFiniteError

    x = np.ones((1, 4), np.float32)
    x[0, 3] = np.inf
    with pytest.raises(NonFiniteError, match=r"input 'x' expects finite values, got 0 NaN and 1 Inf of 4 values, "
                                             r"first at \(0, 3\) \(the caller fed it"):
        load_engine(divide_model, backend)({"x": x, "d": np.ones((1, 4), np.float32)})


@pytest.fixture(scope="module")
def attention_model(tmp_path_factory):
    """Self-attention over x (batch, tokens, 8): softmax(x x^T) x, then + y (batch, tokens, 8)."""
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "xt"], ["scores"]),
             helper.make_node("Softmax", ["scores"], ["weights"], axis=-1),
             helper.make_node("MatMul", ["weights", "x"], ["attended"]),
             helper.make_node("Add", ["attended", "y"], ["out"])]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "tokens", 8]) for n in ("x", "y", "out")]
    model = helper.make_model(helper.make_graph(nodes, "attn", io[:2], io[2:]),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path_factory.mktemp("attn") / "attn.onnx"
    onnx.save(model, str(path))
    return path


def test_activation_estimate_finds_the_largest_tensor_and_refuses_misfits(attention_model):
    from edgegen.runtimes.openvino import activation_estimate

    est = activation_estimate(attention_model, {"x": (2, 100, 8), "y": (2, 100, 8)})
    assert est.shape == (2, 100, 100) and est.nbytes == 2 * 100 * 100 * 4 and est.dtype == "float32"
    fused = activation_estimate(attention_model, {"x": (2, 100, 8), "y": (2, 100, 8)}, fused_attention=True)
    assert fused.shape == (2, 100, 8)  # OpenVINO fuses attention: the scores are never held
    with pytest.raises(EngineInputError, match=r"model 'attn.onnx' cannot take input shapes"):
        activation_estimate(attention_model, {"x": (2, 100, 8), "y": (2, 99, 8)})
