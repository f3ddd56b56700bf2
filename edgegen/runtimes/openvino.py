"""OpenVINO engines on CPU (and any other OpenVINO device name).

OpenVINO's CPU plugin computes FP32 models in BF16 by default on CPUs with AMX / AVX-512 BF16
(``INFERENCE_PRECISION_HINT`` reads bf16). edgegen always sets the hint explicitly: "f32"
for an fp32 engine, "bf16" only when BF16 is asked for, so the precision reported is the
precision computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import BackendUnavailableError, EngineInputError, EngineLoadError
from .base import TensorSpec, check_feeds, check_finite, identify

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def _core():
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("openvino", "openvino", str(exc)) from exc
    return ov, ov.Core()


def _specs(ports) -> tuple[TensorSpec, ...]:
    """Specs from the model as read (before compilation, which can merge fused tensors' names)."""
    specs = []
    for port in ports:
        shape = port.get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
        names = sorted(port.get_names(), key=lambda n: ("/" in n, n))
        specs.append(TensorSpec(names[0], dims, port.get_element_type().to_dtype().name))
    return tuple(specs)


class OpenVinoEngine:
    """An OpenVINO ``CompiledModel`` behind the :class:`~edgegen.runtimes.base.Engine` protocol.

    Args:
        path: an ``.onnx`` file or an OpenVINO IR ``.xml``.
        device: OpenVINO device name, "CPU" by default ("cpu" is accepted).
        precision: "fp32" (hint f32), "bf16" or "fp16" (computed in that precision), or "int8"
            (a quantized model; non-quantized layers in f32).
        threads: ``INFERENCE_NUM_THREADS``; None lets OpenVINO decide.
        cache_dir: OpenVINO model cache directory, to skip recompiling on later loads.
        check_finite: raise :class:`~edgegen.errors.NonFiniteError` when a floating feed or output
            holds NaN / Inf (default; OpenVINO can turn a NaN input into a plausible image).
    Raises:
        BackendUnavailableError: openvino is not installed or the device does not exist.
    """

    backend = "openvino"

    def __init__(self, path: str | Path, *, device: str = "CPU", precision: str = "fp32",
                 threads: int | None = None, cache_dir: str | Path | None = None, check_finite: bool = True):
        ov, core = _core()
        device = device.upper()
        if device not in core.available_devices:
            raise BackendUnavailableError("openvino", None,
                                          f"device: expected one of {core.available_devices}, got '{device}'")
        if precision not in _HINTS:
            raise EngineInputError(f"openvino precision: expected one of {sorted(_HINTS)}, got '{precision}'")
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir:
            config["CACHE_DIR"] = str(cache_dir)
        identify(self, path, device=device, precision=precision, check_finite=check_finite)
        try:
            model = core.read_model(str(path))
            self.inputs = _specs(model.inputs)
            self.outputs = _specs(model.outputs)
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            raise EngineLoadError(f"openvino could not load '{path}': {lines[-1] if lines else exc}") from exc
        self._request = self._compiled.create_infer_request()
        self._output_ports = list(self._compiled.outputs)

    @property
    def inference_precision(self) -> str:
        """What the plugin reports it computes in (e.g. "f32", "bf16")."""
        value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Raises EngineInputError (feeds do not match ``inputs``) or NonFiniteError."""
        check_feeds(self.inputs, feeds, f"openvino engine '{self.path.name}'")
        if self.check_finite:
            check_finite(feeds, self._name, "input")
        result = self._request.infer(dict(feeds), share_inputs=True, share_outputs=False)
        outputs = {spec.name: result[port] for spec, port in zip(self.outputs, self._output_ports)}
        if self.check_finite:
            check_finite(outputs, self._name, "output")
        return outputs


@dataclass(frozen=True)
class ActivationEstimate:
    """The largest intermediate tensor of a model at static input shapes.

    Attributes:
        nbytes: its size in bytes.
        tensor: the operation producing it (the graph's node name).
        shape / dtype: its shape and numpy dtype name.
    """

    nbytes: int
    tensor: str
    shape: tuple[int, ...]
    dtype: str


def read_graph(path: str | Path):
    """The ``openvino.Model`` of an ``.onnx`` / ``.xml`` file, for repeated
    :func:`activation_estimate` calls (the read is most of their cost; the model holds the weights,
    so drop it when done)."""
    _, core = _core()
    return core.read_model(str(path))


def activation_estimate(path, shapes: Mapping[str, Sequence[int]], *,
                        fused_attention: bool = False) -> ActivationEstimate:
    """Shape-infer ``path`` at static input ``shapes`` with OpenVINO (no compilation, no run; about
    0.2 s for a 50M-parameter U-Net once read) and return its largest intermediate tensor.

    A backend holds at least this tensor and the one it is computed from at once, so twice
    ``nbytes`` is a lower bound of the activation memory a call at these shapes needs.

    Args:
        path: an ``.onnx`` or ``.xml`` model, or a model from :func:`read_graph` (left unchanged).
        shapes: graph input name -> full static shape; inputs not named keep their dynamic dims.
        fused_attention: leave out attention scores (Softmax and the ops computing its input): the
            OpenVINO CPU plugin fuses attention and never holds them (measured: the small SD U-Net at
            64x64 latents peaks 290 MiB above its weights on OpenVINO, 2.1 GiB on ONNX Runtime, whose
            two (2, 8, 4096, 4096) float32 score tensors are 1 GiB each).
    Raises:
        EngineInputError: the graph cannot take these shapes (e.g. a U-Net whose skip connections
            need sizes divisible by its downsampling), naming OpenVINO's failing node.
        BackendUnavailableError: openvino is not installed.
    """
    ov, _ = _core()
    model = read_graph(path) if isinstance(path, (str, Path)) else path.clone()
    label = Path(path).name if isinstance(path, (str, Path)) else path.get_friendly_name()
    by_name = {name: port for port in model.inputs for name in port.get_names()}
    try:
        model.reshape({by_name[name]: ov.PartialShape([int(d) for d in shape]) for name, shape in shapes.items()})
    except (RuntimeError, KeyError) as exc:
        lines = [line for line in str(exc).splitlines() if "While validating node" in line or "shapes" in line]
        raise EngineInputError(f"model '{label}' cannot take input shapes {dict(shapes)}: "
                               f"{' '.join(lines[:2]) or exc}") from None
    skip = _attention_scores(model) if fused_attention else set()
    best = ActivationEstimate(0, "", (), "float32")
    for op in model.get_ordered_ops():
        if op.get_type_name() in ("Constant", "Parameter", "Result") or op.get_friendly_name() in skip:
            continue
        for out in op.outputs():
            shape = out.get_partial_shape()
            if shape.is_static:
                dims = tuple(d.get_length() for d in shape)
                nbytes = int(np.prod(dims, dtype=np.int64)) * out.get_element_type().size
                if nbytes > best.nbytes:
                    best = ActivationEstimate(nbytes, op.get_friendly_name(), dims, out.get_element_type().to_dtype().name)
    return best


def _attention_scores(model) -> set[str]:
    """Names of Softmax ops and of the elementwise ops and MatMul that compute their input."""
    names = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Softmax":
            continue
        names.add(op.get_friendly_name())
        node = op.input_value(0).get_node()
        while node.get_type_name() in ("Multiply", "Add", "Divide", "Convert", "MatMul"):
            names.add(node.get_friendly_name())
            if node.get_type_name() == "MatMul":
                break
            node = node.input_value(0).get_node()
    return names
