"""OpenVINO IR beside an artifact's ONNX files: what the OpenVINO backend loads without parsing ONNX.

An ONNX file is a protobuf: OpenVINO reads all of it into memory (the weights once more than the
file), then compiles. IR (``.xml`` graph + ``.bin`` weights) is memory-mapped instead, and with the
weights stored in FP16 the CPU plugin keeps them in FP16 and computes in f32 (``docs/memory.md``
has the figures). :func:`add_openvino_ir` writes ``<component>.xml`` / ``.bin`` into an artifact
being staged and records each as the ``variants.fp32.openvino`` entry, behind a parity gate
against the ONNX file (both run on OpenVINO, same seeded inputs, the export's tolerances): where
FP16 weights do not pass, the IR keeps FP32 weights (``weights`` says which, ``parity`` why).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from ..artifact import Artifact
from ..errors import ParityError
from ..gates import parity_gate
from ..manifest import Component
from ..progress import ProgressCallback, silent
from ..types import Backend, Precision


def ir_file(name: str) -> str:
    """``<component>.xml`` (its weights in ``<component>.bin``)."""
    return f"{name}.xml"


def parity_feeds(comp: Component, seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs at the shapes the export's parity gate used: floats standard normal, integers
    (token ids, class labels) in {0, 1}, valid for any vocabulary or class count."""
    rng = np.random.default_rng(seed)
    shapes = (comp.parity or {}).get("inputs", {})
    feeds = {}
    for spec in comp.inputs:
        shape = tuple(shapes.get(spec.name) or (d if isinstance(d, int) else 1 for d in spec.shape))
        dtype = np.dtype(spec.dtype)
        feeds[spec.name] = (rng.integers(0, 2, shape).astype(dtype) if dtype.kind in "iub"
                            else rng.standard_normal(shape).astype(dtype))
    return feeds


def _save(model, xml: Path, weights: str) -> None:
    import openvino as ov

    for stale in (xml, xml.with_suffix(".bin")):
        stale.unlink(missing_ok=True)  # staged files may be hard links to another artifact's
    ov.save_model(model, str(xml), compress_to_fp16=weights == "fp16")


def _gated_ir(art: Artifact, comp: Component, *, atol: float, rtol: float, seed: int) -> dict:
    """Convert ``comp`` to IR with FP32 weights (the reference: the ONNX file as OpenVINO computes
    it), then to FP16 weights, gated against it; the variant entry of the FP16 IR where it passes
    and computes in f32, else of the FP32 IR. One model in memory at a time: the conversion reads
    the ONNX file once, the engines map the IR."""
    import openvino as ov

    from ..runtimes.openvino import OpenVinoEngine

    xml, scratch = art.path / ir_file(comp.name), art.path / f".{comp.name}.fp32-ir.xml"
    _save(ov.convert_model(str(art.path / comp.file)), scratch, "fp32")
    feeds = parity_feeds(comp, seed)
    reference = OpenVinoEngine(scratch, cache_dir=False)(feeds)
    _save(ov.Core().read_model(str(scratch)), xml, "fp16")
    engine = OpenVinoEngine(xml, cache_dir=False)
    weights, failure = "fp16", None
    try:
        figures = parity_gate(reference, engine(feeds), atol=atol, rtol=rtol,
                              what=f"OpenVINO IR of '{comp.name}' with FP16 weights vs its ONNX file")
        if engine.inference_precision != "f32":
            failure = f"computes in {engine.inference_precision}, expected f32"
    except ParityError as exc:
        failure = str(exc)
    del engine
    if failure is not None:  # FP32 weights: the reference itself (zero error by construction)
        weights, figures = "fp32", {}
        for suffix in (".xml", ".bin"):
            os.replace(scratch.with_suffix(suffix), xml.with_suffix(suffix))
    for suffix in (".xml", ".bin"):
        scratch.with_suffix(suffix).unlink(missing_ok=True)
    return {"file": xml.name, "precision": Precision.fp32.value, "backend": Backend.openvino.value,
            "weights": weights, "parity": {"reference": "the ONNX file on openvino", "seed": seed,
                                           "inputs": {k: list(v.shape) for k, v in feeds.items()},
                                           "outputs": figures, "fp16_refused": failure}}


def add_openvino_ir(art: Artifact, names: Iterable[str] | None = None, *, atol: float = 1e-4, rtol: float = 1e-3,
                    seed: int = 0, progress: ProgressCallback | None = None) -> list[str]:
    """Write OpenVINO IR of the FP32 ONNX components of an artifact being staged
    (:meth:`Artifact.staged`) and record them as ``variants.fp32.openvino`` in its manifest dict.

    Components already with that variant, stored in another precision or format are left alone;
    nothing is written where openvino is not installed (the IR serves only the OpenVINO backend).
    Disk: FP16 weights add about half the ONNX file's size (all FP32 weights: its size).

    Args:
        names: components to convert; None all.
        atol, rtol: the gate's tolerances (the export's by default), applied per output as
            ``max_abs <= atol + rtol * peak |reference|``.
        seed: seeds the gate's inputs (:func:`parity_feeds`).
        progress: one ``(stage, done, total)`` report per component.
    Returns:
        the names of the components converted.
    Raises:
        OSError: the IR could not be written (the export fails as a whole, see ``atomic_artifact``).
    """
    from ..runtimes import available_backends

    if "openvino" not in available_backends():
        return []
    report = progress or silent
    todo = [c for c in (art.component(n) for n in (names or list(art.spec.components)))
            if c.format == "onnx" and c.precision is Precision.fp32
            and Backend.openvino not in c.variants.get(Precision.fp32, {})]
    for i, comp in enumerate(todo):
        report("openvino IR", i, len(todo))
        entry = _gated_ir(art, comp, atol=atol, rtol=rtol, seed=seed)
        art.draft["components"][comp.name].setdefault("variants", {}).setdefault("fp32", {})["openvino"] = entry
    report("openvino IR", len(todo), len(todo))
    return [c.name for c in todo]
