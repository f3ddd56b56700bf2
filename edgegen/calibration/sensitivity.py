"""Which layers lose the most to quantization, measured with ONNX Runtime.

The FP32 ONNX and a QDQ INT8 ONNX of it are run on the same calibration feeds with every
quantizable layer's input and output exposed as extra graph outputs. A layer's error is the
relative L2 error of its output (INT8 vs FP32) minus that of its input: what the layer adds,
not what it inherits from upstream. Layers are named by ONNX node name, which both
quantizers (NNCF and ONNX Runtime) accept for exclusion; the QDQ graph keeps tensor names
where OpenVINO's IR would move them (bias correction adds ops after unbiased convs), so the
ranking is measured on QDQ for every backend.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _probe_onnxruntime(path: Path, tensors: Sequence[str], scratch: Path):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    produced = {o for n in model.graph.node for o in n.output}
    existing = {o.name for o in model.graph.output}
    wanted = [t for t in tensors if t in produced]
    for t in wanted:
        if t not in existing:
            model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    probe = scratch / f"probe-{path.stem}.onnx"
    onnx.save_model(model, str(probe), save_as_external_data=model.ByteSize() > 1_800_000_000)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])

    def run(feeds):
        return dict(zip(wanted, session.run(wanted, dict(feeds))))

    return run


def layer_errors(fp32_path: str | Path, qdq_path: str | Path, *, layers: Sequence[Mapping[str, str]],
                 feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Per-layer added relative error, ``{onnx node name: err(output) - err(input)}``, largest first.

    Args:
        layers: from :func:`edgegen.calibration.quantize.quantizable_layers` (name, input, output).
        feeds: a few calibration feeds; errors are pooled over all of them.
    Layers whose output tensor is not visible in both models (fused away) are left out.
    """
    tensors = sorted({layer["input"] for layer in layers} | {layer["output"] for layer in layers})
    import onnx

    # ORT's QDQ graph drops Relus whose clamp uint8 quantization already does, leaving the
    # pre-Relu values under the Relu's output name: compare those tensors after a Relu.
    fp_graph = onnx.load(str(fp32_path), load_external_data=False).graph
    rectified = {n.output[0] for n in fp_graph.node if n.op_type == "Relu"}
    with tempfile.TemporaryDirectory() as scratch:
        fp = _probe_onnxruntime(Path(fp32_path), tensors, Path(scratch))
        q = _probe_onnxruntime(Path(qdq_path), tensors, Path(scratch))
        diff: dict[str, float] = {}
        ref: dict[str, float] = {}
        for item in feeds:
            a, b = fp(item), q(item)
            for name in a.keys() & b.keys():
                x, y = a[name].astype(np.float64), b[name].astype(np.float64)
                if name in rectified:
                    x, y = np.maximum(x, 0), np.maximum(y, 0)
                if x.shape != y.shape:
                    continue
                diff[name] = diff.get(name, 0.0) + float(((x - y) ** 2).sum())
                ref[name] = ref.get(name, 0.0) + float((x**2).sum())
            for name in feeds[0]:
                diff.setdefault(name, 0.0)
                ref.setdefault(name, 1.0)
    rel = {name: (diff[name] / ref[name]) ** 0.5 if ref[name] > 0 else 0.0 for name in diff}
    scores = {layer["name"]: rel[layer["output"]] - rel.get(layer["input"], 0.0)
              for layer in layers if layer["output"] in rel}
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def _bypass(qdq, fp32_nodes: dict, fp32_inits: dict, relu_outputs: set, name: str):
    """A copy of the QDQ model with node ``name`` fed its FP32 inputs and weights (no Q/DQ)."""
    from onnx import helper

    model = qdq.__class__()
    model.CopyFrom(qdq)
    graph = model.graph
    produced = {o for n in graph.node for o in n.output}
    have = {i.name for i in graph.initializer}
    original = fp32_nodes[name]
    for node in graph.node:
        if node.name != name:
            continue
        inputs = list(original.input)
        for i, tensor in enumerate(inputs):
            if tensor in fp32_inits:
                # Renamed: the QDQ graph may use the name for the dequantized tensor.
                inputs[i] = f"{tensor}__edgegen_fp32"
                if inputs[i] not in have:
                    init = graph.initializer.add()
                    init.CopyFrom(fp32_inits[tensor])
                    init.name = inputs[i]
                    have.add(inputs[i])
            elif tensor in relu_outputs and tensor in produced and not any(
                    n.op_type == "Relu" and tensor in n.output for n in graph.node):
                # The QDQ graph left this Relu to uint8 clamping: restore it for the float path.
                rectified = f"{tensor}__edgegen_relu"
                graph.node.append(helper.make_node("Relu", [tensor], [rectified], name=f"{name}__edgegen_relu"))
                inputs[i] = rectified
        del node.input[:]
        node.input.extend(inputs)
    return model


def output_sensitivity(fp32_path: str | Path, qdq_path: str | Path, *, candidates: Sequence[str],
                       feeds: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """How much the final outputs' squared error (vs FP32) falls when one layer runs in float.

    For each candidate ONNX node, the QDQ model is run with that node alone fed its FP32
    activation and weights; the score is the relative drop of the summed squared error of all
    graph outputs. Positive = keeping that layer in floating point helps. Largest first.
    """
    import onnx
    import onnxruntime as ort

    fp32 = onnx.load(str(fp32_path))
    qdq = onnx.load(str(qdq_path))
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    relu_outputs = {n.output[0] for n in fp32.graph.node if n.op_type == "Relu"}
    options = ort.SessionOptions()
    options.log_severity_level = 3

    def session(model):
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    reference = session(fp32)
    refs = [reference.run(None, dict(f)) for f in feeds]

    def error(sess) -> float:
        total = 0.0
        for f, ref in zip(feeds, refs):
            for a, b in zip(ref, sess.run(None, dict(f))):
                total += float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).sum())
        return total

    base = error(session(qdq))
    scores = {}
    for name in candidates:
        if name not in fp32_nodes:
            continue
        scores[name] = (base - error(session(_bypass(qdq, fp32_nodes, fp32_inits, relu_outputs, name)))) / max(base, 1e-30)
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))
