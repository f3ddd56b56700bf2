"""Where an OpenVINO engine's memory goes: RSS after each loading stage of one component, each
configuration in a fresh process (docs/memory.md holds the figures and the reading).

    python benchmarks/ov_memory.py [--preset small] [--component unet] [--size 512]

Stages: ``import`` (openvino imported), ``read`` (``read_model``), ``compiled`` (``compile_model``),
``freed`` (the read model dropped), ``call`` (one call at ``--size`` px, CFG batch 2), with the
process's peak (VmHWM) after the call. Configurations: the ONNX file, OpenVINO IR with f32 weights,
IR with FP16-compressed weights, IR read without mmap, and a warm model cache.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import json_child, random_sd_artifact, save_result

_PROBE = r"""
import gc, json, sys, time
from pathlib import Path
import numpy as np
from edgegen.bench.worker import peak_rss_mib
import psutil
rss = lambda: psutil.Process().memory_info().rss / 2**20
path, size, mmap, cache = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
out = {}
import openvino as ov
core = ov.Core()
out["import"] = rss()
t = time.perf_counter()
model = core.read_model(path) if mmap else core.read_model(path, config={"ENABLE_MMAP": False})
out["read"] = rss()
config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
if cache:
    config["CACHE_DIR"] = cache
compiled = core.compile_model(model, "CPU", config)
out["compiled"] = rss()
del model; gc.collect()
out["freed"] = rss()
out["load_s"] = time.perf_counter() - t
out["precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
feeds = {}
lat = size // 8
for port in compiled.inputs:
    name = port.get_any_name()
    shape = {"sample": (2, 4, lat, lat), "timestep": (2,), "encoder_hidden_states": (2, 77, 512),
             "latent": (1, 4, lat, lat), "input_ids": (1, 77)}.get(name)
    dtype = port.get_element_type().to_dtype()
    feeds[name] = (np.ones(shape, dtype) if dtype.kind == "i" else np.random.default_rng(0).standard_normal(shape).astype(dtype))
request = compiled.create_infer_request()
t = time.perf_counter()
result = request.infer(feeds)
out["call_s"] = time.perf_counter() - t
out["call"] = rss()
out["peak"] = peak_rss_mib()
out["checksum"] = float(np.abs(next(iter(result.values()))).sum())
print(json.dumps(out))
"""


_PIPELINE = r"""
import json, sys, time
import psutil
from edgegen import Pipeline
from edgegen.bench.worker import peak_rss_mib
rss = lambda: psutil.Process().memory_info().rss / 2**20
path, precision, size, shapes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {"start": rss()}
t = time.perf_counter()
pipe = Pipeline.load(path, backend="openvino", precision=None if precision == "none" else precision, shapes=shapes)
out["load_s"], out["loaded"] = time.perf_counter() - t, rss()
out["files"] = {name: e.engine.path.name for name, e in pipe.engines.items()}
t = time.perf_counter()
pipe("a lighthouse", num_inference_steps=2, seed=0, height=size, width=size)
out["first_run_s"], out["after_run"], out["peak"] = time.perf_counter() - t, rss(), peak_rss_mib()
print(json.dumps(out))
"""


def pipeline_probe(art: Path, precision: str, size: int, shapes: str = "auto", env: dict | None = None) -> dict:
    """Load the whole pipeline on OpenVINO and run 2 steps at ``size`` px in a fresh process."""
    return json_child(["-c", _PIPELINE, str(art), precision, str(size), shapes], env=env)


def convert(onnx: Path, xml: Path, fp16: bool) -> None:
    """ONNX -> OpenVINO IR (in a child process, so this one stays small)."""
    code = (f"import openvino as ov; ov.save_model(ov.convert_model({str(onnx)!r}), {str(xml)!r}, "
            f"compress_to_fp16={fp16})")
    subprocess.run([sys.executable, "-c", code], check=True)


def probe(path: Path, size: int, *, mmap: bool = True, cache: str = "") -> dict:
    return json_child(["-c", _PROBE, str(path), str(size), "1" if mmap else "0", cache])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--component", default="unet")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--pipeline", type=Path, help="an artifact: whole-pipeline figures instead (IR vs ONNX, "
                        "cold vs warm model cache, fp32 and int8)")
    args = parser.parse_args()
    if args.pipeline:
        return pipelines(args.pipeline, args.size)
    onnx = random_sd_artifact(args.preset) / f"{args.component}.onnx"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ir32, ir16, cache = Path(tmp) / "f32.xml", Path(tmp) / "f16.xml", Path(tmp) / "cache"
        convert(onnx, ir32, False)
        convert(onnx, ir16, True)
        rows["onnx"] = probe(onnx, args.size)
        rows["ir_f32"] = probe(ir32, args.size)
        rows["ir_f32_no_mmap"] = probe(ir32, args.size, mmap=False)
        rows["ir_f16_weights"] = probe(ir16, args.size)
        rows["onnx_cache_cold"] = probe(onnx, args.size, cache=str(cache))
        rows["onnx_cache_warm"] = probe(onnx, args.size, cache=str(cache))
        shutil.rmtree(cache)
        rows["ir_f16_cache_cold"] = probe(ir16, args.size, cache=str(cache))
        rows["ir_f16_cache_warm"] = probe(ir16, args.size, cache=str(cache))
        sizes = {"onnx": onnx.stat().st_size, "ir_f32_bin": ir32.with_suffix(".bin").stat().st_size,
                 "ir_f16_bin": ir16.with_suffix(".bin").stat().st_size}
    for name, row in rows.items():
        print(f"{name:20s} " + " ".join(f"{k}={v:.0f}" if k not in ("load_s", "call_s", "checksum") else
                                        f"{k}={v:.3f}" for k, v in row.items() if k != "precision")
              + f" {row['precision']}", flush=True)
    save_result(f"ov_memory_{args.preset}_{args.component}_{args.size}",
                {"file_bytes": sizes, "rss_mib": rows, "args": vars(args)})


def pipelines(art: Path, size: int) -> None:
    """Whole SD pipeline on OpenVINO: FP32 from IR vs from ONNX (a copy without IR), INT8, each with a
    cold and a warm model cache (a fresh cache directory, then the same again)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_openvino_load import _without_ir

    from edgegen.artifact import Artifact

    has_int8 = any(c.has_variant("int8", "openvino") for c in Artifact.load(art).spec.components.values())
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = _without_ir(art, Path(tmp) / "old")
        configs = [("fp32_ir", art, "none"), ("fp32_onnx", old, "none")] + ([("int8", art, "int8")] if has_int8 else [])
        for label, path, precision in configs:
            env = {"EDGEGEN_CACHE_DIR": str(Path(tmp) / f"cache-{label}")}
            for state in ("cold", "warm"):
                rows[f"{label}_{state}"] = row = pipeline_probe(path, precision, size, env=env)
                print(f"{label}_{state:5s} " + " ".join(f"{k}={v:.2f}" if k.endswith("_s") else f"{k}={v}"
                                                     if k == "files" else f"{k}={v:.0f}" for k, v in row.items()),
                      flush=True)
    save_result(f"ov_pipeline_memory_{art.name}_{size}", {"rss_mib": rows, "artifact": str(art), "size": size})


if __name__ == "__main__":
    main()
