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


def export_component(module: torch.nn.Module, spec: ComponentSpec, path: Path, *, atol: float = 1e-4,
                     rtol: float = 1e-3, seed: int = 0, opset: int = OPSET,
                     progress: ProgressCallback | None = None) -> dict:
    """Export ``module`` to ``path`` (ONNX) and gate it against PyTorch with ONNX Runtime.

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
    import onnx

    from ..runtimes.onnxruntime import OnnxRuntimeEngine

    report = progress or silent
    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = spec.example(seed)
    report(f"{spec.name}: tracing to ONNX (opset {opset})", 0, None)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        raw = Path(scratch) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            # Tracer warnings about Python-side shape checks are expected and not actionable.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, tuple(torch.from_numpy(feeds[s.name]) for s in spec.inputs), str(raw),
                              input_names=[s.name for s in spec.inputs],
                              output_names=[s.name for s in spec.outputs],
                              dynamic_axes=spec.dynamic_axes(), opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        model = onnx.load(str(raw))
        size = sum(t.ByteSize() for t in model.graph.initializer)
        if size > _EXTERNAL_DATA_BYTES:
            onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=path.name + ".data", size_threshold=1024)
        else:
            onnx.save_model(model, str(path))
        del model
    report(f"{spec.name}: parity gate (ONNX Runtime vs PyTorch)", 0, None)
    reference = _torch_outputs(module, spec, feeds)
    engine = OnnxRuntimeEngine(path)
    figures = parity_gate(reference, engine(feeds), atol=atol, rtol=rtol,
                          what=f"export of '{spec.name}' (ONNX Runtime vs PyTorch, seed {seed})")
    return {"file": path.name, "format": "onnx", "precision": "fp32", **spec.manifest_io(),
            "parity": {"reference": "pytorch", "runtime": "onnxruntime", "seed": seed,
                       "inputs": {k: list(v.shape) for k, v in feeds.items()},
                       "output_shapes": {k: list(v.shape) for k, v in reference.items()},
                       "outputs": figures}}
