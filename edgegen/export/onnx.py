"""Torch -> ONNX for one component, ending in the ONNX Runtime vs PyTorch parity gate."""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..gates import parity_gate
from ..progress import ProgressCallback, silent
from ..runtimes.base import TensorSpec

OPSET = 17
_EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB; leave headroom


@dataclass(frozen=True)
class ComponentSpec:
    """Flat description of one exported graph (TensorRT demo's ``BaseModel`` style).

    Attributes:
        name: component name in the manifest ("unet", "text_encoder", ...).
        inputs / outputs: graph tensors; str dims are dynamic and named (same name = same size).
        sizes: concrete sizes for the named dims, used for the example inputs.
        int_high: exclusive upper bound for integer example inputs (timesteps, token ids), or a
            dict of bounds by input name.
    """

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sizes: dict[str, int] = field(default_factory=dict)
    int_high: int | dict[str, int] = 1000

    def example(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded example feeds: N(0, 1) floats, uniform integers in [0, int_high)."""
        rng = np.random.default_rng(seed)
        feeds = {}
        for spec in self.inputs:
            shape = tuple(d if isinstance(d, int) else self.sizes[d] for d in spec.shape)
            if spec.dtype.startswith("float"):
                feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
            else:
                high = self.int_high.get(spec.name, 1000) if isinstance(self.int_high, dict) else self.int_high
                feeds[spec.name] = rng.integers(0, high, shape).astype(spec.dtype)
        return feeds

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)}
                for s in (*self.inputs, *self.outputs) if any(isinstance(d, str) for d in s.shape)}

    def manifest_io(self) -> dict[str, list[dict]]:
        io = lambda specs: [{"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs]  # noqa: E731
        return {"inputs": io(self.inputs), "outputs": io(self.outputs)}


def _torch_outputs(module: torch.nn.Module, spec: ComponentSpec, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[s.name]) for s in spec.inputs))
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {s.name: o.detach().float().numpy() for s, o in zip(spec.outputs, out)}


@dataclass
class TracedComponent:
    """A component traced to ONNX but not yet saved nor gated (:func:`trace_component`).

    Holds no torch module: the caller may release it before :func:`finish_component` loads the
    ONNX proto and an ONNX Runtime session (at SD 1.5 size each is another copy of the weights).
    """

    spec: ComponentSpec
    scratch: tempfile.TemporaryDirectory
    feeds: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    seed: int

    @property
    def raw(self) -> Path:
        return Path(self.scratch.name) / "model.onnx"


def trace_component(module: torch.nn.Module, spec: ComponentSpec, path: Path, *, seed: int = 0,
                    opset: int = OPSET, progress: ProgressCallback | None = None) -> TracedComponent:
    """Run ``module`` on seeded example inputs (the parity reference) and trace it to ONNX in a
    scratch directory beside ``path``; :func:`finish_component` saves and gates it."""
    report = progress or silent
    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = spec.example(seed)
    reference = _torch_outputs(module, spec, feeds)
    report(f"{spec.name}: tracing to ONNX (opset {opset})", 0, None)
    traced = TracedComponent(spec, tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{spec.name}.trace-"),
                             feeds, reference, seed)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python-side shape checks are expected and not actionable.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(torch.from_numpy(feeds[s.name]) for s in spec.inputs), str(traced.raw),
                              input_names=[s.name for s in spec.inputs],
                              output_names=[s.name for s in spec.outputs],
                              dynamic_axes=spec.dynamic_axes(), opset_version=opset, dynamo=False,
                              do_constant_folding=True)
    except BaseException:
        traced.scratch.cleanup()
        raise
    return traced


def finish_component(traced: TracedComponent, path: Path, *, atol: float = 1e-4, rtol: float = 1e-3,
                     progress: ProgressCallback | None = None) -> dict:
    """Save a traced component to ``path`` (weights in ``<path>.data`` beyond ~1.8 GB), remove
    the scratch trace and gate ONNX Runtime's outputs against the PyTorch reference.

    Returns / Raises: as :func:`export_component`.
    """
    import onnx

    from ..runtimes.onnxruntime import OnnxRuntimeEngine

    report, spec = progress or silent, traced.spec
    try:
        model = onnx.load(str(traced.raw))
        size = sum(t.ByteSize() for t in model.graph.initializer)
        if size > _EXTERNAL_DATA_BYTES:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=path.name + ".data", size_threshold=1024)
        else:
            onnx.save_model(model, str(path))
        del model
    finally:
        traced.scratch.cleanup()
    report(f"{spec.name}: parity gate (ONNX Runtime vs PyTorch)", 0, None)
    engine = OnnxRuntimeEngine(path)
    figures = parity_gate(traced.reference, engine(traced.feeds), atol=atol, rtol=rtol,
                          what=f"export of '{spec.name}' (ONNX Runtime vs PyTorch, seed {traced.seed})")
    return {"file": path.name, "format": "onnx", "precision": "fp32", **spec.manifest_io(),
            "parity": {"reference": "pytorch", "runtime": "onnxruntime", "seed": traced.seed,
                       "inputs": {k: list(v.shape) for k, v in traced.feeds.items()},
                       "output_shapes": {k: list(v.shape) for k, v in traced.reference.items()},
                       "outputs": figures}}


def export_component(module: torch.nn.Module, spec: ComponentSpec, path: Path, *, atol: float = 1e-4,
                     rtol: float = 1e-3, seed: int = 0, opset: int = OPSET,
                     progress: ProgressCallback | None = None) -> dict:
    """Export ``module`` to ``path`` (ONNX) and gate it against PyTorch with ONNX Runtime
    (:func:`trace_component` then :func:`finish_component`).

    Args:
        module: called positionally with the inputs in ``spec.inputs`` order; returns a tensor
            or a tuple matching ``spec.outputs``.
        path: destination ``.onnx`` file (weights go to ``<path>.data`` beyond ~1.8 GB).
        atol, rtol: the parity gate's tolerances (see :func:`edgegen.gates.parity_gate`).
    Returns:
        the manifest entry for the component (file name, io, parity figures, precision).
    Raises:
        ParityError: ONNX Runtime's outputs differ from PyTorch's beyond tolerance.
    """
    traced = trace_component(module, spec, path, seed=seed, opset=opset, progress=progress)
    return finish_component(traced, path, atol=atol, rtol=rtol, progress=progress)
