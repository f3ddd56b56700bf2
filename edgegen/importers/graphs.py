"""Graph I/O adaptation for imports: rename graph inputs / outputs, and give a U-Net that takes one
timestep for the whole batch a ``timestep`` (batch,) input. Weights are never touched.

Both functions return the edits made as short sentences for the manifest (empty: the file was
copied unchanged).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from ..errors import BackendUnavailableError, ImportSourceError

TIMESTEP = "timestep"
_FIRST_TIMESTEP = "timestep_first"


def _require(module: str, extra: str):
    """Import ``module`` or raise BackendUnavailableError naming the pip extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(module, extra, f"edgegen import needs it ({exc})") from exc


def _timestep_edit(shape: list, where: Path) -> list[int] | None:
    """Indices shape that gathers edgegen's (batch,) timestep into the original input's shape,
    or None when the original already is (batch,)."""
    if not shape:
        return []
    if len(shape) == 1:
        return [1] if shape[0] == 1 else None
    raise ImportSourceError(f"'{where}': input '{TIMESTEP}' expected a scalar, [1] or (batch,), got shape {shape}")


def adapt_onnx(src: Path, dst: Path, renames: Mapping[str, str], *, external_prefix: str) -> list[str]:
    """Write ``src`` (an ONNX file) to ``dst`` with graph inputs / outputs renamed and a (batch,)
    timestep. External data files are copied unchanged, renamed ``<external_prefix>.data[.N]`` so
    that components do not collide in one directory.

    Raises:
        ImportSourceError: a timestep input of another shape than scalar, [1] or (batch,).
        BackendUnavailableError: the onnx package is not installed (``edgegen[import]``).
    """
    onnx = _require("onnx", "import")
    model = onnx.load(str(src), load_external_data=False)
    graph = model.graph
    edits = [f"renamed {old} -> {new}" for old, new in renames.items() if _rename_onnx(graph, old, new)]
    edits += _onnx_timestep(graph, src)
    locations = _relocate_external(model, external_prefix)
    if not edits and not locations:
        shutil.copyfile(src, dst)
        return []
    onnx.save_model(model, str(dst))
    for old, new in locations.items():
        shutil.copyfile(src.parent / old, dst.parent / new)
    return edits + [f"external data {old} -> {new}" for old, new in locations.items()]


def _nodes(graph) -> Iterator:
    """Every node, subgraphs (If / Loop bodies) included: they may read outer-scope tensors."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub)


def _rename_onnx(graph, old: str, new: str) -> bool:
    if not any(v.name == old for v in (*graph.input, *graph.output)):
        return False
    for value in (*graph.input, *graph.output, *graph.value_info):
        if value.name == old:
            value.name = new
    for node in _nodes(graph):
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
    return True


def _onnx_timestep(graph, where: Path) -> list[str]:
    import onnx
    from onnx import helper

    value = next((v for v in graph.input if v.name == TIMESTEP), None)
    if value is None:
        return []
    dims = value.type.tensor_type.shape.dim
    indices = _timestep_edit([d.dim_value if d.HasField("dim_value") else None for d in dims], where)
    if indices is None:
        return []
    for node in _nodes(graph):
        for i, name in enumerate(node.input):
            if name == TIMESTEP:
                node.input[i] = _FIRST_TIMESTEP
    sample = next((v for v in graph.input if v.name == "sample"), None)
    batch = sample.type.tensor_type.shape.dim[0] if sample is not None else onnx.TensorShapeProto.Dimension(dim_param="batch")
    del dims[:]
    dims.add().CopyFrom(batch)
    graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(indices, np.int64), f"{_FIRST_TIMESTEP}_index"))
    graph.node.insert(0, helper.make_node("Gather", [TIMESTEP, f"{_FIRST_TIMESTEP}_index"], [_FIRST_TIMESTEP], axis=0,
                                          name="edgegen_first_timestep"))
    return [f"timestep {'scalar' if not indices else '[1]'} -> (batch,), first element used"]


def _relocate_external(model, prefix: str) -> dict[str, str]:
    """Point external-data tensors at ``<prefix>.data`` (``.data.N`` for further files); old -> new names."""
    from onnx.external_data_helper import uses_external_data

    locations: dict[str, str] = {}
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        for entry in tensor.external_data:
            if entry.key == "location":
                if entry.value not in locations:
                    locations[entry.value] = f"{prefix}.data" + (f".{len(locations)}" if locations else "")
                entry.value = locations[entry.value]
    return locations


def adapt_openvino(src: Path, dst: Path, renames: Mapping[str, str]) -> list[str]:
    """Write the IR ``src`` (.xml beside its .bin) to ``dst`` (.xml, and .bin beside it) with
    inputs / outputs renamed and a (batch,) timestep. Unchanged IR is copied file for file; a
    changed one is saved by OpenVINO without FP16 compression, which writes the same .bin bytes.

    Raises:
        ImportSourceError: a timestep input of another shape than scalar, [1] or (batch,).
        BackendUnavailableError: openvino is not installed (``edgegen[openvino]``).
    """
    ov = _require("openvino", "openvino")
    model = ov.Core().read_model(str(src))
    edits = []
    for port in (*model.inputs, *model.outputs):
        for old, new in renames.items():
            if old in port.get_names():
                port.get_tensor().set_names({new})
                edits.append(f"renamed {old} -> {new}")
    edits += _openvino_timestep(model, src)
    if not edits:
        shutil.copyfile(src, dst)
        shutil.copyfile(src.with_suffix(".bin"), dst.with_suffix(".bin"))
        return []
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return edits


def _openvino_timestep(model, where: Path) -> list[str]:
    import openvino as ov
    import openvino.opset13 as ops

    port = next((p for p in model.inputs if TIMESTEP in p.get_names()), None)
    if port is None:
        return []
    old = port.get_node()
    shape = old.get_partial_shape()
    indices = _timestep_edit([d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else [0, 0],
                             where)
    if indices is None:
        return []
    new = ops.parameter(ov.PartialShape([-1]), old.get_element_type(), name=TIMESTEP)
    first = ops.gather(new, ops.constant(np.zeros(indices, np.int64)), ops.constant(np.int64(0)))
    for target in list(old.output(0).get_target_inputs()):
        target.replace_source_output(first.output(0))
    old.output(0).get_tensor().set_names(set())
    model.replace_parameter(model.get_parameter_index(old), new)
    new.output(0).get_tensor().set_names({TIMESTEP})
    model.validate_nodes_and_infer_types()
    return [f"timestep {'scalar' if not indices else '[1]'} -> (batch,), first element used"]
