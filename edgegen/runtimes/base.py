"""The engine abstraction every backend implements, and the input checks they share.

An engine is a compiled model that maps ``dict[str, np.ndarray]`` feeds, keyed by graph
input name, to ``dict[str, np.ndarray]`` outputs keyed by graph output name (as Polygraphy's
``infer`` and OpenVINO's ``CompiledModel``). Returned arrays are owned by the caller: an
engine never hands out views of buffers it reuses.

Engines check that their floating-point feeds and outputs are finite (on by default,
``check_finite=False`` to turn off): a NaN or Inf never becomes a black image. The check is
``np.isfinite(x).all()`` per tensor; its measured cost is in ``docs/validation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Union, runtime_checkable

import numpy as np

from ..errors import EngineInputError, NonFiniteError

Dim = Union[int, str, None]  # a fixed size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: ``shape`` holds ints for fixed dims, names or None for dynamic ones."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str  # numpy dtype name, e.g. "float32", "int64"

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype} ({dims})"


@runtime_checkable
class Engine(Protocol):
    """A loaded model on one backend and device.

    Attributes:
        backend: "openvino", "onnxruntime" or "tensorrt".
        precision: the precision the engine computes in ("fp32", "bf16", "fp16", "int8").
        inputs / outputs: the graph's tensors, in graph order.
    """

    backend: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def __call__(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. Raises EngineInputError when the feeds do not match ``inputs``, NonFiniteError
        when a floating feed or output holds NaN / Inf (unless built with ``check_finite=False``)."""
        ...


def identify(engine, path: str | Path, *, device: str, precision: str, check_finite: bool) -> None:
    """Set what every engine exposes: ``path``, ``device``, ``precision``, ``check_finite``, and the
    name its errors use (``engine 'unet.onnx' (openvino)``, from the class's ``backend``)."""
    engine.path, engine.device, engine.precision, engine.check_finite = Path(path), device, precision, check_finite
    engine._name = f"engine '{engine.path.name}' ({engine.backend})"


def check_feeds(inputs: tuple[TensorSpec, ...], feeds: Mapping[str, np.ndarray], where: str) -> None:
    """Validate feeds against specs: names, dtypes, ranks, fixed dims, shared symbolic dims.

    Raises:
        EngineInputError: one message listing every mismatch, naming expected and received.
    """
    problems = []
    expected = {s.name for s in inputs}
    missing, extra = expected - set(feeds), set(feeds) - expected
    if missing or extra:
        problems.append(f"expected inputs {sorted(expected)}, got {sorted(feeds)}")
    symbols: dict[str, tuple[int, str]] = {}
    for spec in inputs:
        if spec.name not in feeds:
            continue
        value = feeds[spec.name]
        if not isinstance(value, np.ndarray):
            problems.append(f"input '{spec.name}' expects a numpy array {spec.describe()}, got {type(value).__name__}")
            continue
        ok = value.dtype == np.dtype(spec.dtype) and value.ndim == len(spec.shape)
        if ok:
            for dim, size in zip(spec.shape, value.shape):
                if isinstance(dim, int) and dim != size:
                    ok = False
                elif isinstance(dim, str) and dim:
                    seen = symbols.setdefault(dim, (size, spec.name))
                    if seen[0] != size:
                        problems.append(f"input '{spec.name}' dim '{dim}' is {size} but input '{seen[1]}' "
                                        f"gave it {seen[0]}")
        if not ok:
            problems.append(f"input '{spec.name}' expects {spec.describe()}, "
                            f"got {value.dtype} {tuple(value.shape)}")
    if problems:
        raise EngineInputError(f"{where}: " + "; ".join(problems))


def nonfinite_detail(value: np.ndarray) -> str | None:
    """None when ``value`` is finite (or not floating point), else e.g.
    "3 NaN and 1 Inf of 8192 values, first at (0, 1, 3, 3)"."""
    if value.dtype.kind not in "fc" or np.isfinite(value).all():
        return None
    nan, bad = np.isnan(value), ~np.isfinite(value)
    first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), value.shape))
    return (f"{int(nan.sum())} NaN and {int(bad.sum() - nan.sum())} Inf of {value.size} values, "
            f"first at {first}")


def check_finite(tensors: Mapping[str, np.ndarray], component: str, role: str) -> None:
    """Raise on the first floating-point tensor (in mapping order) holding NaN or Inf.

    Args:
        tensors: name -> array, e.g. an engine's feeds or outputs.
        component: what produced or receives them, e.g. "engine 'unet.onnx' (onnxruntime)".
        role: "input" or "output".
    Raises:
        NonFiniteError: naming the component, the tensor, NaN / Inf counts and the first bad index.
    """
    for name, value in tensors.items():
        detail = nonfinite_detail(value) if isinstance(value, np.ndarray) else None
        if detail:
            raise NonFiniteError(component, name, role, detail)
