"""INT8 with bounded memory (issue 12 item 4): calibration feeds streamed to disk give what the
in-memory feeds give, the staged feed files are removed on success and on failure, and every
stage of an INT8 export reports its counts (so the CLI's bar can show an ETA).

Memory figures themselves are measured by benchmarks/int8_memory.py, not tested here.
"""

import json

import numpy as np
import pytest

pytest.importorskip("nncf")

from edgegen.artifact import Artifact  # noqa: E402
from edgegen.calibration import gates  # noqa: E402
from edgegen.calibration.int8 import Int8Options, QualityGateError, quantize  # noqa: E402
from edgegen.calibration.quantize import quantize_nncf  # noqa: E402
from edgegen.calibration.record import FeedStore, record_diffusion  # noqa: E402
from edgegen.runtimes import load_engine  # noqa: E402

FAST = dict(samples=1, steps=2, gate_samples=1, force=True, height=32, width=32)


def test_feed_store_reads_back_what_was_appended_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    items = [{"sample": rng.standard_normal((2, 4, 8, 8), dtype=np.float32), "timestep": np.array([3.0, 3.0], np.float32),
              "in/put:0": rng.integers(0, 9, (2, 7))} for _ in range(3)]
    store = FeedStore(tmp_path / "feeds")
    for item in items:
        store.append(item)
    assert len(store) == 3 and [list(x) for x in store] == [list(x) for x in items]
    for got, want in zip(store, items):
        for name in want:
            assert isinstance(got[name], np.memmap) and not got[name].flags.writeable
            np.testing.assert_array_equal(got[name], want[name])
            assert got[name].dtype == want[name].dtype
    assert len(store[1:]) == 2 and np.array_equal(store[-1]["sample"], items[-1]["sample"])
    store.clear()
    assert len(store) == 0 and not list((tmp_path / "feeds").iterdir())


@pytest.fixture(scope="module")
def recorded(tiny_sd_artifact, tmp_path_factory):
    """The tiny SD's calibration feeds, recorded once in memory and once streamed to disk."""
    art = Artifact.load(tiny_sd_artifact)
    options = dict(samples=2, sampler="ddim", steps=3, seed=0, height=32, width=32, backend="openvino")
    memory = record_diffusion(art, **options)
    disk = record_diffusion(art, **options, directory=tmp_path_factory.mktemp("feeds"))
    return art, memory, disk


def test_feeds_streamed_to_disk_equal_the_in_memory_ones(recorded):
    _, memory, disk = recorded
    assert isinstance(disk["unet"], FeedStore) and set(disk) == set(memory)
    for component in memory:
        assert len(disk[component]) == len(memory[component]) > 0
        for x, y in zip(memory[component], disk[component]):
            assert list(x) == list(y)
            for name in x:
                np.testing.assert_array_equal(x[name], y[name])


def test_nncf_on_streamed_feeds_writes_the_same_int8_model(recorded, tmp_path):
    art, memory, disk = recorded
    unet = art.component_path("unet")
    a = quantize_nncf(unet, tmp_path / "a.xml", memory["unet"], transformer=True)
    b = quantize_nncf(unet, tmp_path / "b.xml", disk["unet"], transformer=True)
    assert a.with_suffix(".bin").read_bytes() == b.with_suffix(".bin").read_bytes()


def test_step_errors_on_recorded_fp32_outputs_equal_those_of_a_resident_fp32_engine(recorded, tmp_path):
    """The gate's per-step U-Net error no longer keeps the FP32 engine loaded: the FP32 outputs are
    those recorded on the trajectory. Same figures as rerunning the FP32 engine (float noise)."""
    art, memory, disk = recorded
    int8 = load_engine(quantize_nncf(art.component_path("unet"), tmp_path / "q.xml", memory["unet"]),
                       "openvino", precision="int8")
    fp32 = load_engine(art.component_path("unet"), "openvino", precision="fp32")
    per_step = [[item] for item in disk["unet"]]
    references = [[next(iter(fp32(item).values()))] for item in memory["unet"]]
    resident = [[next(iter(fp32(item).values())) for item in step] for step in per_step]
    calls = []
    errors = gates.step_errors(references, int8, per_step, progress=lambda done, total: calls.append((done, total)))
    np.testing.assert_allclose(errors, gates.step_errors(resident, int8, per_step), rtol=1e-6, atol=1e-9)
    assert all(0 < e < 1 for e in errors) and calls[-1] == (len(per_step), len(per_step))


def _scratch(root):
    return [p for p in root.rglob(".int8-feeds-*")]


def test_every_stage_reports_counts_and_the_staged_feeds_are_removed(tiny_sd_dir, tmp_path):
    """export --int8 end to end on the tiny SD: each counted stage ends at its total (the CLI's bar
    then has an ETA), and the feeds staged on disk while quantizing are gone afterwards."""
    from edgegen.export import export_stable_diffusion

    seen, scratch_seen = [], []

    def progress(stage, done=0, total=None):
        seen.append((stage, done, total))
        scratch_seen.extend(p for p in _scratch(tmp_path) if any(p.rglob("*.npy")))

    out = export_stable_diffusion(tiny_sd_dir, tmp_path / "q", progress=progress,
                                  int8=Int8Options(**FAST, min_psnr=0, min_ssim=0, max_step_error=1.0))
    assert scratch_seen, "the calibration feeds were not streamed into the staging directory"
    assert not _scratch(tmp_path) and sorted(p.name for p in tmp_path.iterdir()) == ["q"]
    counted = {}
    for stage, done, total in seen:
        if total is not None:
            counted.setdefault(stage, set()).add((done, total))
    expected = ["export: components", "calibration: recording FP32 trajectories", "FP32 reference for the quality gate",
                "quantizing with NNCF", "unet: NNCF: collecting statistics", "text_encoder: NNCF: collecting statistics",
                "quality gate: INT8 pipeline on the gate samples", "quality gate: per-step U-Net error",
                "int8: quality gate (up to", "speed gate"]
    for part in expected:
        stages = [s for s in counted if part in s]
        assert stages, f"no counted stage like {part!r}: {sorted(counted)}"
        for stage in stages:
            totals = {t for _, t in counted[stage]}
            assert len(totals) == 1 and max(d for d, _ in counted[stage]) == min(totals), (stage, counted[stage])
    manifest = json.loads((out / "edgegen.json").read_text())
    assert len(manifest["quantization"]["int8"]["rounds"][-1]["figures"]["step_rel_error"]) == FAST["steps"]


def test_a_failed_gate_leaves_no_staged_feeds(tiny_sd_artifact, tmp_path):
    seen = []

    def progress(stage, done=0, total=None):
        seen.extend(_scratch(tmp_path))

    with pytest.raises(QualityGateError):
        quantize(tiny_sd_artifact, tmp_path / "q", options=Int8Options(**FAST, min_psnr=200, max_rounds=0),
                 progress=progress)
    assert seen and not _scratch(tmp_path) and not (tmp_path / "q").exists()
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def test_nncf_memory_savers_keep_the_int8_model(tiny_sd_artifact, tmp_path, monkeypatch):
    """What keeps the SD 1.5 export under 10 GB (docs/memory.md) does not change the model: CFG
    batches split into rows give the same IR as whole batches (NNCF's statistics are the same), and
    SmoothQuant's scales in float32 keep the INT8 weights (rare rounding flips) and the error vs FP32."""
    pytest.importorskip("nncf")
    import contextlib

    import openvino as ov

    from edgegen.calibration import quantize
    from edgegen.runtimes.openvino import OpenVinoEngine
    unet = tiny_sd_artifact / "unet.onnx"
    engine = OpenVinoEngine(unet, cache_dir=False)
    rng = np.random.default_rng(0)

    def feeds(batch: int) -> dict:  # symbolic sizes (latent side, tokens) at 8
        out = {}
        for spec in engine.inputs:
            shape = [batch] + [d if isinstance(d, int) else 8 for d in spec.shape[1:]]
            out[spec.name] = (np.full(shape, 500, spec.dtype) if spec.name == "timestep"
                              else rng.standard_normal(shape).astype(spec.dtype))
        return out

    calibration, test = [feeds(2) for _ in range(3)], feeds(2)
    fp32 = engine(test)["noise_pred"]
    saved = quantize.quantize_nncf(unet, tmp_path / "saved.xml", calibration, transformer=True)
    rows_only = quantize._rows
    monkeypatch.setattr(quantize, "_smooth_quant_in_float32", contextlib.nullcontext)
    split = quantize.quantize_nncf(unet, tmp_path / "split.xml", calibration, transformer=True)
    monkeypatch.setattr(quantize, "_rows", lambda item: 1)
    plain = quantize.quantize_nncf(unet, tmp_path / "plain.xml", calibration, transformer=True)
    assert rows_only(calibration[0]) == 2
    out = {name: OpenVinoEngine(xml, cache_dir=False)(test)["noise_pred"]
           for name, xml in (("saved", saved), ("split", split), ("plain", plain))}
    np.testing.assert_array_equal(out["split"], out["plain"])
    error = {name: float(np.abs(value - fp32).mean()) for name, value in out.items()}
    assert error["saved"] <= 1.05 * error["plain"], error

    def int8_constants(xml):
        model = ov.Core().read_model(str(xml))
        return [op.get_data() for op in model.get_ordered_ops()
                if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    a, b = int8_constants(saved), int8_constants(plain)
    assert len(a) == len(b) > 0
    assert sum(int((x == y).sum()) for x, y in zip(a, b)) / sum(x.size for x in a) >= 0.99
