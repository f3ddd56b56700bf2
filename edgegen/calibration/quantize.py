"""INT8 post-training quantization with each backend's own quantizer.

* OpenVINO: NNCF (``nncf.quantize`` on the ``ov.Model`` read from the FP32 ONNX), saved as IR.
* ONNX Runtime (and the QDQ ONNX TensorRT consumes): ``onnxruntime.quantization.quantize_static``
  in QDQ format, per-channel symmetric int8 weights, uint8 activations, MinMax calibration.

ONNX Runtime quantizes the weighted layers (Conv, ConvTranspose, MatMul, Gemm) — inputs and
weights — the placement TensorRT's explicit-quantization guide recommends. NNCF's default
(MIXED preset) also quantizes the inputs of element-wise ops, normalizations and concatenations;
``weighted_only`` restricts it to the weighted layers as well. On the DDPM-MNIST U-Net that is
worth 2.6 dB of image PSNR against FP32 (18.6 -> 21.2 dB median, DDIM 50, 32 samples), while on
the TAEF2 decoder NNCF's default is the better one (> 40 dB vs 24 dB), so the choice is per family.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailableError
from ..memory import releasing_file_pages
from ..progress import ProgressCallback, silent

QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


class Quantizer(str, Enum):
    nncf = "nncf"              # -> OpenVINO IR
    onnxruntime = "onnxruntime"  # -> QDQ ONNX


def quantizable_layers(onnx_path: str | Path) -> list[dict]:
    """The graph's quantizable nodes: ``{"name", "op", "input", "output"}`` in graph order.

    ``input`` is the activation input (input 0). ``output`` is the node's output, or that of
    the Relu right after it when the Relu is its only consumer: the quantizers fuse the pair,
    so that is the tensor both the FP32 and the INT8 graph still have (``relu`` is then true:
    in the QDQ graph that tensor holds the pre-Relu values, the Relu being left to uint8
    quantization's clamp at zero).
    """
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = []
    for node in graph.node:
        if node.op_type not in QUANTIZABLE_OPS:
            continue
        out = node.output[0]
        after = consumers.get(out, [])
        relu = len(after) == 1 and after[0].op_type == "Relu"
        if relu:
            out = after[0].output[0]
        layers.append({"name": node.name, "op": node.op_type, "input": node.input[0], "output": out, "relu": relu})
    return layers


def quantize_nncf(onnx_path: str | Path, out_xml: str | Path, calibration: Sequence[Mapping[str, np.ndarray]], *,
                  exclude: Sequence[str] = (), transformer: bool = False, weighted_only: bool = False,
                  progress: ProgressCallback | None = None) -> Path:
    """Quantize with NNCF for OpenVINO; writes ``out_xml`` (+ ``.bin``).

    Args:
        calibration: feeds dicts; every item is used (``subset_size = len(calibration)``). A
            sequence read item by item (``FeedStore``) is never held whole.
        exclude: ONNX node names to keep in floating point (mapped to OpenVINO op names).
        transformer: NNCF's ``ModelType.TRANSFORMER`` scheme (attention blocks, SmoothQuant).
        weighted_only: activation quantizers only at the inputs of weighted layers.
        progress: ``("NNCF: ...", done, total)`` per calibration row (items split along their
            batch) NNCF's statistic collection reads (one pass per algorithm that collects
            statistics: SmoothQuant, then min/max), and a message when the graph is read,
            quantized and saved.
    Activation ranges are the calibration set's min/max (NNCF's default quantile estimator
    clipped the TAEF2 decoder's outliers: 3.6 dB lost instead of 0.3 dB on the held-out photo).
    """
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("openvino", "openvino", str(exc)) from exc
    report = progress or silent
    # NNCF compiles the model once per statistics pass; the plugin computes from its own copy, so
    # the memory-mapped weight pages each compile reads are dropped as it goes (docs/memory.md).
    with releasing_file_pages([str(Path(onnx_path).resolve().parent) + os.sep]):
        quantized = _nncf_quantize(nncf, ov, onnx_path, calibration, exclude=exclude, transformer=transformer,
                                   weighted_only=weighted_only, report=report)
    report("NNCF: saving the INT8 IR", 0, None)
    out_xml = Path(out_xml)
    # Save under a temporary name and rename: OpenVINO memory-maps the .bin of models already
    # loaded from this path, and rewriting that file in place corrupts them.
    fd, tmp = tempfile.mkstemp(prefix=f".{out_xml.stem}.", suffix=".xml", dir=out_xml.parent)
    os.close(fd)
    tmp_xml = Path(tmp)
    try:
        ov.save_model(quantized, str(tmp_xml), compress_to_fp16=False)
        os.replace(tmp_xml.with_suffix(".bin"), out_xml.with_suffix(".bin"))
        os.replace(tmp_xml, out_xml)
    finally:
        tmp_xml.unlink(missing_ok=True)
        tmp_xml.with_suffix(".bin").unlink(missing_ok=True)
    return out_xml


def _nncf_quantize(nncf, ov, onnx_path, calibration, *, exclude, transformer, weighted_only, report):
    """``nncf.quantize`` of the ONNX file's model with edgegen's settings: the quantized ov.Model."""
    report("NNCF: reading the FP32 model", 0, None)
    model = ov.Core().read_model(str(onnx_path))
    scope = nncf.IgnoredScope(names=_openvino_names(model, exclude),
                              types=list(_NNCF_FLOAT_TYPES) if weighted_only else [], validate=False)
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced = nncf.AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    counted = _Counted(calibration, report)
    nncf.set_log_level(logging.WARNING)  # its INFO lines list every op left unquantized
    with contextlib.redirect_stdout(io.StringIO()), _smooth_quant_in_float32():  # NNCF prints ignored nodes
        quantized = nncf.quantize(model, nncf.Dataset(counted), preset=nncf.QuantizationPreset.MIXED,
                                  subset_size=len(counted), ignored_scope=scope, advanced_parameters=advanced,
                                  model_type=nncf.ModelType.TRANSFORMER if transformer else None)
    return quantized


@contextlib.contextmanager
def _smooth_quant_in_float32():
    """NNCF 3.4's SmoothQuant computes its scales through ``fns.quantile``, which returns float64,
    so every smoothed weight is first built as a float64 copy (about 3 GiB more at SD 1.5 size while
    its pass runs). Casting the scales back to the activations' dtype gives the same INT8 weights
    (float32 constants within 2e-6 relative) at a quarter of that memory. Patched for the call only;
    a NNCF without this method is left as it is."""
    try:
        from nncf.quantization.algorithms.smooth_quant.algorithm import SmoothQuant
    except ImportError:
        yield
        return
    original = SmoothQuant.__dict__.get("_calculate_scale_and_ratio")
    if not isinstance(original, staticmethod):
        yield
        return

    def in_float32(activations, weights, alpha, quantile=0.1):
        scales, ratio = original.__func__(activations, weights, alpha, quantile)
        return scales.astype(activations.dtype), ratio

    SmoothQuant._calculate_scale_and_ratio = staticmethod(in_float32)
    try:
        yield
    finally:
        SmoothQuant._calculate_scale_and_ratio = original


# OpenVINO op types NNCF would otherwise put activation quantizers in front of.
_NNCF_FLOAT_TYPES = ("Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum", "Concat", "MVN",
                     "NormalizeL2", "GroupNormalization", "Reshape", "Transpose", "Interpolate", "AvgPool",
                     "MaxPool", "ReduceMean", "Sigmoid", "Swish", "Softmax", "Power", "SquaredDifference")


def _openvino_names(model, onnx_names: Iterable[str]) -> list[str]:
    """OpenVINO splits a biased ONNX Conv into ``NAME/WithoutBiases`` + ``NAME`` (the bias Add);
    both are ignored, or NNCF may quantize the bias Add of a float convolution."""
    wanted = set(onnx_names)
    names = []
    for op in model.get_ordered_ops():
        friendly = op.get_friendly_name()
        base = friendly.removesuffix("/WithoutBiases")
        if base in wanted and op.get_type_name() in ("Convolution", "ConvolutionBackpropData", "MatMul",
                                                       "GroupConvolution", "Add"):
            names.append(friendly)
    return names


class _Counted:
    """Calibration feeds as NNCF reads them, one batch row at a time, reporting ``(stage, rows
    read, rows)`` per row of each pass (NNCF's own progress bar is not a callback).

    Items whose arrays all share a leading (batch) dimension are handed row by row: NNCF's
    statistics (min/max, SmoothQuant's per-channel max, bias correction's per-channel means over
    equal rows) are the same, and its statistics model runs at batch 1, holding half the
    activations of a CFG batch of 2 (docs/memory.md).
    """

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]], report: ProgressCallback):
        self.feeds, self.report, self.passes = feeds, report, 0
        self.rows = [_rows(item) for item in feeds]

    def __len__(self) -> int:
        return sum(self.rows)

    def __iter__(self):
        self.passes += 1
        stage = f"NNCF: collecting statistics, pass {self.passes} (calibration rows)"
        handed, total = 0, len(self)
        try:
            for item, rows in zip(self.feeds, self.rows):
                for row in range(rows):
                    self.report(stage, handed, total)
                    yield item if rows == 1 else {name: value[row:row + 1] for name, value in item.items()}
                    handed += 1
        finally:
            # NNCF stops pulling after its subset: the last row is done when it closes the pass.
            if handed + 1 >= total:
                self.report(stage, total, total)


def _rows(item: Mapping[str, np.ndarray]) -> int:
    """How many rows an item splits into: its batch when every array has that leading dimension, else 1."""
    leading = {value.shape[0] if np.ndim(value) else None for value in item.values()}
    return leading.pop() if len(leading) == 1 and None not in leading and 0 not in leading else 1


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - quantize_static reads once
        pass


def quantize_onnxruntime(onnx_path: str | Path, out_onnx: str | Path, calibration: Sequence[Mapping[str, np.ndarray]],
                         *, exclude: Sequence[str] = (), per_channel: bool = True) -> Path:
    """Quantize to QDQ ONNX with ``onnxruntime.quantization.quantize_static``.

    Weights: int8 symmetric, per output channel; activations: uint8 asymmetric (MinMax over
    every calibration item). ``exclude``: ONNX node names kept in floating point.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_onnx = Path(out_onnx)
    with tempfile.TemporaryDirectory(dir=out_onnx.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        big = os.path.getsize(prepared) > 1_800_000_000
        quantize_static(str(prepared), str(out_onnx), _Reader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=list(QUANTIZABLE_OPS),
                        nodes_to_exclude=list(exclude), calibrate_method=CalibrationMethod.MinMax,
                        use_external_data_format=big,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                       # onnxruntime 1.2x-1.3x fails on per-channel Gemm biases without this
                                       "QDQDisableWeightAdjustForInt32Bias": True})
    return out_onnx
