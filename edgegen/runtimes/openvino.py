"""OpenVINO engines on CPU (and any other OpenVINO device name).

OpenVINO's CPU plugin computes FP32 models in BF16 by default on CPUs with AMX / AVX-512 BF16
(``INFERENCE_PRECISION_HINT`` reads bf16). edgegen always sets the hint explicitly: "f32"
for an fp32 engine, "bf16" only when BF16 is asked for, so the precision reported is the
precision computed.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..checksums import cache_dir
from ..errors import BackendUnavailableError, EngineInputError, EngineLoadError
from ..memory import releasing_file_pages
from .base import TensorSpec, check_feeds, check_finite, identify

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
STATIC_SHAPES_KEPT = 4  # compiled models an engine keeps for static shapes (least recently used dropped)
CACHE_ENV = "EDGEGEN_OPENVINO_CACHE"  # "0" / "off": no model cache unless a cache_dir is given
CACHE_LIMIT_ENV = "EDGEGEN_OPENVINO_CACHE_GB"  # the model cache's size bound in GiB (default below)
CACHE_LIMIT_GB = 16.0  # an SD 1.5-size FP32 U-Net compiled static is 3.4 GB of it
_RECENT_S = 120.0  # files written this recently may belong to a compilation still running: kept


def _core():
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("openvino", "openvino", str(exc)) from exc
    return ov, ov.Core()


def default_cache_dir() -> Path | None:
    """Where OpenVINO engines keep compiled models by default: ``<edgegen cache>/openvino``
    (:func:`edgegen.checksums.cache_dir`: ``$EDGEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgegen``,
    else ``~/.cache/edgegen``); None when ``$EDGEGEN_OPENVINO_CACHE`` is "0" or "off"."""
    if os.environ.get(CACHE_ENV, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    return cache_dir() / "openvino"


def _cache_config(cache: str | Path | bool | None) -> dict:
    """``{"CACHE_DIR": ...}`` for a cache that can be created, else ``{}`` (a read-only home only
    costs recompiling)."""
    folder = default_cache_dir() if cache is True else (Path(cache) if cache else None)
    if folder is None:
        return {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return {}
    prune_cache(folder, cache_limit_bytes())
    return {"CACHE_DIR": str(folder)}


def cache_limit_bytes() -> int:
    """The model cache's size bound: ``$EDGEGEN_OPENVINO_CACHE_GB`` GiB, else :data:`CACHE_LIMIT_GB`.

    Raises:
        EngineInputError: the variable is not a positive number.
    """
    raw = os.environ.get(CACHE_LIMIT_ENV, "").strip()
    if not raw:
        return int(CACHE_LIMIT_GB * 2**30)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise EngineInputError(f"{CACHE_LIMIT_ENV}: expected a positive number of GiB, got '{raw}'")
    return int(value * 2**30)


def prune_cache(folder: str | Path, limit: int) -> list[Path]:
    """Delete the least recently used files of an OpenVINO model cache until it holds at most
    ``limit`` bytes; returns what was deleted.

    Recency is a file's last access or modification (access times follow the mount's atime
    policy, e.g. relatime: at least daily). Files modified in the last two minutes are kept (a
    compilation may be writing them), and so is whatever cannot be read or deleted. A deleted blob
    costs one compilation at the next load of its model; a process that has it mapped keeps it.
    """
    entries = []
    for path in Path(folder).iterdir():
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            entries.append((max(st.st_atime, st.st_mtime), st.st_mtime, st.st_size, path))
    total = sum(size for _, _, size, _ in entries)
    deleted = []
    now = time.time()
    for _, modified, size, path in sorted(entries):
        if total <= limit:
            break
        if now - modified < _RECENT_S:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        deleted.append(path)
    return deleted


def _specs(ports) -> tuple[TensorSpec, ...]:
    """Specs of model or compiled-model ports (the graph's own names preferred over internal ones)."""
    specs = []
    for port in ports:
        shape = port.get_partial_shape()
        dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
        names = sorted(port.get_names(), key=lambda n: ("/" in n, n))
        specs.append(TensorSpec(names[0], dims, port.get_element_type().to_dtype().name))
    return tuple(specs)


def _load_error(path, exc: RuntimeError) -> EngineLoadError:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return EngineLoadError(f"openvino could not load '{path}': {lines[-1] if lines else exc}")


class OpenVinoEngine:
    """An OpenVINO ``CompiledModel`` behind the :class:`~edgegen.runtimes.base.Engine` protocol.

    Loading compiles straight from the file (``Core.compile_model(path)``): OpenVINO drops the read
    model once compiled, maps IR weights (``.bin``) instead of reading them, and with a model cache
    imports the compiled blob without reading the model at all (docs/memory.md has the figures).

    Args:
        path: an ``.onnx`` file or an OpenVINO IR ``.xml``.
        device: OpenVINO device name, "CPU" by default ("cpu" is accepted).
        precision: "fp32" (hint f32), "bf16" or "fp16" (computed in that precision), or "int8"
            (a quantized model; non-quantized layers in f32).
        threads: ``INFERENCE_NUM_THREADS``; None lets OpenVINO decide.
        cache_dir: OpenVINO's model cache (``CACHE_DIR``), so later loads skip compiling: True (the
            default) uses :func:`default_cache_dir`, a path that directory, False / None none.
        static: compile for the exact input shapes of each call (reshaped at the first call with
            those shapes; the last :data:`STATIC_SHAPES_KEPT` compiled models kept) instead of
            once for the graph's dynamic shapes. Outputs are the same; speed and memory differ
            (docs/memory.md).
        check_finite: raise :class:`~edgegen.errors.NonFiniteError` when a floating feed or output
            holds NaN / Inf (default; OpenVINO can turn a NaN input into a plausible image).
    Raises:
        BackendUnavailableError: openvino is not installed or the device does not exist.
        EngineLoadError: OpenVINO cannot read or compile the file.
    """

    backend = "openvino"

    def __init__(self, path: str | Path, *, device: str = "CPU", precision: str = "fp32",
                 threads: int | None = None, cache_dir: str | Path | bool | None = True, static: bool = False,
                 check_finite: bool = True):
        ov, core = _core()
        device = device.upper()
        if device not in core.available_devices:
            raise BackendUnavailableError("openvino", None,
                                          f"device: expected one of {core.available_devices}, got '{device}'")
        if precision not in _HINTS:
            raise EngineInputError(f"openvino precision: expected one of {sorted(_HINTS)}, got '{precision}'")
        config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
                  **_cache_config(cache_dir)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        identify(self, path, device=device, precision=precision, check_finite=check_finite)
        self.static, self._core, self._config = static, core, config
        self._by_shape: OrderedDict[tuple, tuple] = OrderedDict()
        self._closed = False
        # The weight files' (and the model cache's) mapped pages: the plugin computes from its own
        # copy, so the pages read while compiling (and at a dynamic model's first call) are dropped.
        self._mapped = [str(Path(path).resolve().parent) + os.sep] + (
            [str(Path(config["CACHE_DIR"]).resolve()) + os.sep] if "CACHE_DIR" in config else [])
        # A dynamic model repacks its weights at its first call; a static one did so when compiled.
        self._weights_prepared = static
        try:
            if static:  # read for the specs only: each call's shapes compile their own model
                model = core.read_model(str(path))
                self.inputs, self.outputs = _specs(model.inputs), _specs(model.outputs)
                del model
                self._compiled = None
            else:
                with releasing_file_pages(self._mapped):
                    self._compiled = core.compile_model(str(path), device, config)
                self.inputs, self.outputs = _specs(self._compiled.inputs), _specs(self._compiled.outputs)
                self._request = self._compiled.create_infer_request()
        except RuntimeError as exc:
            raise _load_error(path, exc) from exc

    @property
    def cache_dir(self) -> Path | None:
        """The model cache directory this engine compiles through, or None."""
        return Path(self._config["CACHE_DIR"]) if "CACHE_DIR" in self._config else None

    def close(self) -> None:
        """Drop the ``InferRequest`` and ``CompiledModel`` (every shape's, when static; their weights and
        buffers go with the last reference); the engine cannot run afterwards. Idempotent."""
        self._request = self._compiled = None
        self._by_shape.clear()
        self._closed = True

    def release_buffers(self) -> None:
        """Free the compiled models' intermediate buffers (activations, scratch) until the next
        call, which allocates them again (``CompiledModel.release_memory``); weights stay. Measured
        on the SD 1.5 VAE decoder at 512 px: 0.75 GiB freed in 0.02 s, the next call as fast."""
        compiled = [self._compiled] if self._compiled is not None else []
        for model in compiled + [c for c, _ in self._by_shape.values()]:
            release = getattr(model, "release_memory", None)
            if release is not None:
                release()

    def __enter__(self) -> "OpenVinoEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def inference_precision(self) -> str:
        """What the plugin reports it computes in (e.g. "f32", "bf16"); a static engine that has
        compiled no shape yet compiles the dynamic graph once (through the model cache) to answer."""
        compiled = self._compiled or next((c for c, _ in reversed(self._by_shape.values())), None)
        if compiled is None:
            compiled = self._core.compile_model(str(self.path), self.device, self._config)
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def _compile_static(self, shapes: tuple[tuple[int, ...], ...]) -> tuple:
        """(compiled model, infer request) for these input shapes (in ``inputs`` order), from the
        kept ones or reshaped and compiled now (through the model cache)."""
        if shapes in self._by_shape:
            self._by_shape.move_to_end(shapes)
            return self._by_shape[shapes]
        ov, _ = _core()
        try:
            with releasing_file_pages(self._mapped):
                model = self._core.read_model(str(self.path))
                by_name = {name: port for port in model.inputs for name in port.get_names()}
                model.reshape({by_name[spec.name]: ov.PartialShape(list(shape))
                               for spec, shape in zip(self.inputs, shapes)})
                compiled = self._core.compile_model(model, self.device, self._config)
                del model
        except RuntimeError as exc:
            raise _load_error(self.path, exc) from exc
        self._by_shape[shapes] = compiled, compiled.create_infer_request()
        while len(self._by_shape) > STATIC_SHAPES_KEPT:
            self._by_shape.popitem(last=False)
        return self._by_shape[shapes]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Raises EngineInputError (feeds do not match ``inputs``) or NonFiniteError."""
        check_feeds(self.inputs, feeds, f"openvino engine '{self.path.name}'")
        if self._closed:
            raise EngineLoadError(f"{self._name} was closed; load it again to run it")
        if self.check_finite:
            check_finite(feeds, self._name, "input")
        if self.static:
            compiled, request = self._compile_static(tuple(feeds[s.name].shape for s in self.inputs))
        else:
            compiled, request = self._compiled, self._request
        if self._weights_prepared:
            result = request.infer(dict(feeds), share_inputs=True, share_outputs=False)
        else:
            with releasing_file_pages(self._mapped):
                result = request.infer(dict(feeds), share_inputs=True, share_outputs=False)
            self._weights_prepared = True
        outputs = {spec.name: result[port] for spec, port in zip(self.outputs, compiled.outputs)}
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


# Components whose static compile measured faster or smaller than dynamic, by (component, file
# variant); "auto" compiles these static, the others dynamic (docs/memory.md, benchmarks/ov_shapes.py).
# U-Net: faster (SD 1.5 size INT8 1.27x). VAE decoder at 512 px, SD 1.5 size: FP32 1.07 vs 1.45 GiB
# at equal speed, INT8 0.86 vs 1.23 GiB and 1.7 vs 1.9 s (its tiles share one shape).
STATIC_PAYS: frozenset[tuple[str, str]] = frozenset({("unet", "fp32"), ("unet", "int8"),
                                                     ("vae_decoder", "fp32"), ("vae_decoder", "int8")})


def static_pays(component: str, variant: str, mode) -> bool:
    """Whether a component compiles for static shapes under ``mode`` (:class:`edgegen.types.ShapeMode`
    or its string): "static" always, "dynamic" never, "auto" where :data:`STATIC_PAYS` says the
    measurements favoured it."""
    mode = getattr(mode, "value", mode)
    return mode == "static" or (mode == "auto" and (component, variant) in STATIC_PAYS)
