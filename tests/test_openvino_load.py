"""OpenVINO loading (issue 12 items 1 and 3): IR with FP16-stored weights beside the ONNX files,
the model cache, static shapes, and artifacts written before IR existed.

Engines are real OpenVINO / ONNX Runtime sessions on tiny models. Timing is not tested (the
figures are in docs/memory.md); what is tested is what the figures rely on.
"""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("openvino")

from edgegen import Pipeline  # noqa: E402
from edgegen.artifact import Artifact  # noqa: E402
from edgegen.compile.openvino import parity_feeds  # noqa: E402
from edgegen.errors import BackendUnavailableError, EngineInputError  # noqa: E402
from edgegen.runtimes.openvino import STATIC_SHAPES_KEPT, OpenVinoEngine  # noqa: E402


@pytest.fixture
def ov_cache(tmp_path, monkeypatch):
    """A private edgegen cache directory (the OpenVINO model cache lives under it)."""
    monkeypatch.setenv("EDGEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEGEN_OPENVINO_CACHE", raising=False)
    return tmp_path / "cache" / "openvino"


def _close(reference: dict, candidate: dict, atol=1e-4, rtol=1e-3) -> None:
    for name, ref in reference.items():
        assert np.abs(candidate[name] - ref).max() <= atol + rtol * np.abs(ref).max(), name


def test_export_writes_gated_ir_that_openvino_loads(tiny_sd_artifact):
    """Every SD component gets ``variants.fp32.openvino``: IR with FP16 weights, computed in f32, within
    the export tolerance of its ONNX file; Pipeline.load on OpenVINO runs the IR, ONNX Runtime the ONNX."""
    art = Artifact.load(tiny_sd_artifact)
    for name, comp in art.spec.components.items():
        variant = comp.variant(None, "openvino")
        assert variant.file == f"{name}.xml" and variant.weights == "fp16", name
        assert (art.path / f"{name}.bin").is_file() and f"{name}.bin" in art.spec.files
        assert variant.parity["fp16_refused"] is None and variant.parity["outputs"]
        feeds = parity_feeds(comp, seed=variant.parity["seed"])  # FP16 weights: ~1e-3 relative, the gate's edge
        ir = OpenVinoEngine(art.path / variant.file, cache_dir=False)
        assert ir.inference_precision == "f32"
        _close(OpenVinoEngine(art.path / comp.file, cache_dir=False)(feeds), ir(feeds))
    pipe = Pipeline.load(tiny_sd_artifact, backend="openvino")
    assert all(e.engine.path.suffix == ".xml" for e in pipe.engines.values())
    onnx = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")
    assert all(e.engine.path.suffix == ".onnx" for e in onnx.engines.values())
    kwargs = dict(num_inference_steps=2, seed=3, height=32, width=32)
    np.testing.assert_allclose(pipe("a cat", **kwargs).images, onnx("a cat", **kwargs).images, atol=2e-3)


def test_fp16_weights_are_stored_in_fp16(tiny_sd_artifact):
    """The IR holds its large constants in f16 (about half the ONNX weights on disk) and OpenVINO
    reports f32 compute for it."""
    import openvino as ov

    model = ov.Core().read_model(str(tiny_sd_artifact / "unet.xml"))
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops()
             if op.get_type_name() == "Constant" and op.get_output_size() and np.prod(op.get_output_shape(0)) > 64}
    assert "f16" in types and "f32" not in types
    assert (tiny_sd_artifact / "unet.bin").stat().st_size < 0.6 * (tiny_sd_artifact / "unet.onnx").stat().st_size


def _without_ir(src, dst):
    """A copy of ``src`` as written before IR variants existed (no .xml / .bin, no fp32 variants)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.xml", "*.bin"))
    manifest = json.loads((dst / "edgegen.json").read_text())
    for comp in manifest["components"].values():
        comp.get("variants", {}).pop("fp32", None)
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.endswith((".xml", ".bin"))}
    (dst / "edgegen.json").write_text(json.dumps(manifest))
    return dst


def test_old_artifacts_without_ir_load_from_onnx(tiny_sd_artifact, tmp_path):
    old = _without_ir(tiny_sd_artifact, tmp_path / "old")
    pipe = Pipeline.load(old, backend="openvino")
    assert all(e.engine.path.suffix == ".onnx" for e in pipe.engines.values())
    new = Pipeline.load(tiny_sd_artifact, backend="openvino")
    kwargs = dict(num_inference_steps=2, seed=3, height=32, width=32)
    np.testing.assert_allclose(pipe("a cat", **kwargs).images, new("a cat", **kwargs).images, atol=2e-3)


def test_quantize_adds_ir_to_an_old_artifact(tmp_path):
    """`edgegen quantize --backend openvino` of an artifact without IR writes the FP32 IR as well."""
    pytest.importorskip("nncf")
    from tiny_models import export_tiny

    from edgegen.calibration.int8 import Int8Options, quantize

    old = _without_ir(export_tiny("generator", tmp_path / "gen"), tmp_path / "old")
    out = quantize(old, tmp_path / "q", options=Int8Options(backend="openvino", samples=8, gate_samples=2, min_psnr=0.0,
                                                          min_ssim=-1.0, force=True))
    comp = Artifact.load(out).component("generator")
    assert comp.variant(None, "openvino").file == "generator.xml" and comp.has_variant("int8", "openvino")
    assert not Artifact.load(old).component("generator").variants  # the input is left alone


def test_fp16_weights_the_gate_refuses_leave_fp32_weights(tmp_path):
    """With tolerances FP16 rounding cannot meet, the IR keeps FP32 weights (equal to the ONNX file's
    outputs) and says why; no scratch file is left behind."""
    from tiny_models import export_tiny

    from edgegen.compile.openvino import add_openvino_ir

    old = _without_ir(export_tiny("generator", tmp_path / "gen"), tmp_path / "old")
    manifest = json.loads((old / "edgegen.json").read_text())
    assert add_openvino_ir(Artifact.staged(old, manifest), atol=0.0, rtol=0.0) == ["generator"]
    entry = manifest["components"]["generator"]["variants"]["fp32"]["openvino"]
    assert entry["weights"] == "fp32" and "parity gate failed" in entry["parity"]["fp16_refused"]
    assert sorted(p.name for p in old.iterdir() if "generator" in p.name) == [
        "generator.bin", "generator.onnx", "generator.xml"]
    comp = Artifact.staged(old, manifest).component("generator")
    feeds = parity_feeds(comp, seed=0)
    a = OpenVinoEngine(old / "generator.xml", cache_dir=False)(feeds)
    b = OpenVinoEngine(old / "generator.onnx", cache_dir=False)(feeds)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_model_cache_is_written_and_gives_identical_outputs(tiny_sd_artifact, ov_cache):
    path = tiny_sd_artifact / "unet.xml"
    feeds = parity_feeds(Artifact.load(tiny_sd_artifact).component("unet"), seed=0)
    first = OpenVinoEngine(path)
    assert first.cache_dir == ov_cache and any(ov_cache.glob("*.blob"))
    blobs = sorted(ov_cache.glob("*.blob"))
    second = OpenVinoEngine(path)  # imported from the cache
    assert sorted(ov_cache.glob("*.blob")) == blobs
    a, b = first(feeds), second(feeds)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_model_cache_opt_out(tiny_sd_artifact, ov_cache, monkeypatch):
    monkeypatch.setenv("EDGEGEN_OPENVINO_CACHE", "0")
    assert OpenVinoEngine(tiny_sd_artifact / "unet.xml").cache_dir is None
    assert OpenVinoEngine(tiny_sd_artifact / "unet.xml", cache_dir=False).cache_dir is None
    assert not ov_cache.exists() or not any(ov_cache.iterdir())


def test_static_shapes_match_dynamic_and_keep_a_few_compiled_models(tiny_sd_artifact, ov_cache):
    comp = Artifact.load(tiny_sd_artifact).component("unet")
    dynamic = OpenVinoEngine(tiny_sd_artifact / "unet.xml")
    static = OpenVinoEngine(tiny_sd_artifact / "unet.xml", static=True)
    assert static.inputs == dynamic.inputs and static.outputs == dynamic.outputs
    assert static.inference_precision == "f32"
    rng = np.random.default_rng(0)
    for batch, size in [(2, 8), (1, 8), (2, 16), (2, 4), (1, 16), (2, 8)]:
        feeds = {"sample": rng.standard_normal((batch, 4, size, size)).astype(np.float32),
                 "timestep": np.full((batch,), 10.0, np.float32),
                 "encoder_hidden_states": rng.standard_normal((batch, 7, 32)).astype(np.float32)}
        feeds = {s.name: feeds[s.name] for s in comp.inputs}
        a, b = static(feeds), dynamic(feeds)
        assert all(np.allclose(a[k], b[k], atol=1e-5) for k in a)
        assert len(static._by_shape) <= STATIC_SHAPES_KEPT


def test_pipeline_static_shapes_give_the_same_images(tiny_sd_artifact, ov_cache):
    kwargs = dict(num_inference_steps=2, seed=3, height=32, width=32)
    static = Pipeline.load(tiny_sd_artifact, backend="openvino", shapes="static")
    assert all(e.engine.static for e in static.engines.values())
    dynamic = Pipeline.load(tiny_sd_artifact, backend="openvino", shapes="dynamic")
    assert not any(e.engine.static for e in dynamic.engines.values())
    np.testing.assert_allclose(static("a cat", **kwargs).images, dynamic("a cat", **kwargs).images, atol=1e-5)
    with pytest.raises(BackendUnavailableError, match="shapes static: expected backend openvino"):
        Pipeline.load(tiny_sd_artifact, backend="onnxruntime", shapes="static")
    with pytest.raises(EngineInputError, match="shapes"):
        Pipeline.load(tiny_sd_artifact, backend="openvino", shapes="fixed")


def _file_rss_kib(path) -> int:
    """This process's resident KiB of mappings of ``path`` (``/proc/self/smaps``)."""
    import os
    import re
    target, current, total = os.path.realpath(path), None, 0
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split(maxsplit=5)
                current = parts[5].strip() if len(parts) > 5 else None
            elif line.startswith("Rss:") and current == target:
                total += int(line.split()[1])
    return total


def _matmul_ir(folder, rows=2048, cols=2048):
    """An IR ``x (1, rows) @ W (rows, cols) -> (1, cols)`` with 16 MiB of f32 weights in its ``.bin``,
    and W for a numpy reference."""
    import openvino as ov
    from openvino import opset13 as ops
    w = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    x = ops.parameter(ov.PartialShape([-1, rows]), ov.Type.f32, name="x")
    y = ops.matmul(x, ops.constant(w), False, False)
    y.output(0).get_tensor().set_names({"y"})
    xml = folder / "matmul.xml"
    ov.save_model(ov.Model([y], [x], "matmul"), str(xml), compress_to_fp16=False)
    return xml, w


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="/proc/self/smaps is Linux's")
@pytest.mark.parametrize("static", [False, True])
def test_weight_file_pages_are_not_kept_resident(tmp_path, static):
    """The CPU plugin computes from its own copy of the weights but keeps the IR's ``.bin`` mapped:
    the engine drops the pages it read (docs/memory.md), and the outputs are unchanged."""
    xml, w = _matmul_ir(tmp_path)
    engine = OpenVinoEngine(xml, cache_dir=False, static=static)
    x = np.random.default_rng(1).standard_normal((1, w.shape[0]), dtype=np.float32)
    for _ in range(2):
        out = engine({"x": x})["y"]
        np.testing.assert_allclose(out, x @ w, rtol=1e-4, atol=1e-3)
        assert _file_rss_kib(xml.with_suffix(".bin")) < 1024  # of 16 MiB


def test_release_file_pages_leaves_writable_mappings_and_data_alone(tmp_path):
    """Only read-only mappings are advised: their pages read back from the file; a writable mapping
    (whose pages may hold unsaved writes) keeps them."""
    from edgegen.memory import release_file_pages
    data = np.arange(4 << 20, dtype=np.float32)  # 16 MiB
    data.tofile(tmp_path / "ro.f32")
    data.tofile(tmp_path / "rw.f32")
    ro = np.memmap(tmp_path / "ro.f32", dtype=np.float32, mode="r")
    rw = np.memmap(tmp_path / "rw.f32", dtype=np.float32, mode="r+")
    assert float(ro.sum()) == float(data.sum())
    rw[:] += 1
    if __import__("sys").platform.startswith("linux"):
        assert release_file_pages([tmp_path / "ro.f32", tmp_path / "rw.f32"]) == 1
        assert _file_rss_kib(tmp_path / "ro.f32") < 1024
        assert _file_rss_kib(tmp_path / "rw.f32") > 8 * 1024
    np.testing.assert_array_equal(ro, data)
    np.testing.assert_array_equal(rw, data + 1)
    assert release_file_pages([]) == 0


@pytest.mark.parametrize("static", [False, True])
def test_release_buffers_frees_activations_and_keeps_outputs(tmp_path, static):
    """``release_buffers`` (what default mode does when a stage ends) hands the activations back
    (a 64 MiB intermediate here) and the next call computes the same outputs."""
    import openvino as ov
    from openvino import opset13 as ops

    from edgegen.memory import rss_bytes
    x = ops.parameter(ov.PartialShape([1, 1, -1, -1]), ov.Type.f32, name="x")
    k1 = np.random.default_rng(0).standard_normal((16, 1, 3, 3), dtype=np.float32)
    k2 = np.random.default_rng(1).standard_normal((1, 16, 3, 3), dtype=np.float32) / 16
    h = ops.relu(ops.convolution(x, ops.constant(k1), [1, 1], [1, 1], [1, 1], [1, 1]))
    y = ops.convolution(h, ops.constant(k2), [1, 1], [1, 1], [1, 1], [1, 1])
    y.output(0).get_tensor().set_names({"y"})
    xml = tmp_path / "convs.xml"
    ov.save_model(ov.Model([y], [x], "convs"), str(xml))
    engine = OpenVinoEngine(xml, cache_dir=False, static=static)
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 1, 1024, 1024), dtype=np.float32)}
    first = engine(feeds)["y"]
    before = rss_bytes()
    engine.release_buffers()
    if before is not None:
        assert before - rss_bytes() > 32 << 20
    np.testing.assert_array_equal(engine(feeds)["y"], first)
    engine.close()
    engine.release_buffers()  # closed: nothing left to release, no error


def test_model_cache_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    """The model cache keeps at most ``EDGEGEN_OPENVINO_CACHE_GB``: loading an engine deletes the
    least recently used blobs over it, never one written in the last two minutes."""
    import os
    import time

    from edgegen.runtimes.openvino import cache_limit_bytes, prune_cache
    cache = tmp_path / "cache" / "openvino"
    cache.mkdir(parents=True)
    now = time.time()
    for name, age_s in (("old.blob", 3000), ("older.blob", 4000), ("used.blob", 2000), ("new.blob", 10)):
        (cache / name).write_bytes(b"x" * (1 << 20))
        os.utime(cache / name, (now - age_s, now - age_s))
    assert prune_cache(cache, 3 << 20) == [cache / "older.blob"]
    assert prune_cache(cache, 0) == [cache / "old.blob", cache / "used.blob"]  # new.blob: being written, kept
    monkeypatch.setenv("EDGEGEN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEGEN_OPENVINO_CACHE", raising=False)
    monkeypatch.setenv("EDGEGEN_OPENVINO_CACHE_GB", "0.001")
    assert cache_limit_bytes() == int(0.001 * 2**30)
    xml, w = _matmul_ir(tmp_path)
    (cache / "stale.blob").write_bytes(b"x" * (2 << 20))
    os.utime(cache / "stale.blob", (now - 3000, now - 3000))
    engine = OpenVinoEngine(xml)
    assert not (cache / "stale.blob").exists() and (cache / "new.blob").exists()
    x = np.ones((1, w.shape[0]), np.float32)
    np.testing.assert_allclose(engine({"x": x})["y"], x @ w, rtol=1e-4, atol=1e-3)
    for bad in ("0", "-1", "lots", "inf"):
        monkeypatch.setenv("EDGEGEN_OPENVINO_CACHE_GB", bad)
        with pytest.raises(EngineInputError, match=f"EDGEGEN_OPENVINO_CACHE_GB: expected a positive number of GiB, got '{bad}'"):
            OpenVinoEngine(xml)
