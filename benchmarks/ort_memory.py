"""ONNX Runtime session options vs memory and speed: RSS after the session is created and peak
after calls at ``--size`` px (CFG batch 2), one fresh process per configuration
(docs/memory.md holds the figures and the reading).

    python benchmarks/ort_memory.py [--preset small] [--size 512] [--calls 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import json_child, random_sd_artifact, save_result

CONFIGS = {
    "default": {},
    "no_cpu_mem_arena": {"arena": False},
    "no_mem_pattern": {"pattern": False},
    "no_arena_no_pattern": {"arena": False, "pattern": False},
    "device_allocator_for_initializers": {"entries": {"session.use_device_allocator_for_initializers": "1"}},
    "env_allocators": {"entries": {"session.use_env_allocators": "1"}},
    "external_data": {"external": True},
}

_PROBE = r"""
import json, sys, time
import numpy as np
import psutil
import onnxruntime as ort
from edgegen.bench.worker import peak_rss_mib
rss = lambda: psutil.Process().memory_info().rss / 2**20
path, size, calls, cfg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
out = {"import": rss()}
options = ort.SessionOptions()
options.enable_cpu_mem_arena = cfg.get("arena", True)
options.enable_mem_pattern = cfg.get("pattern", True)
for key, value in cfg.get("entries", {}).items():
    options.add_session_config_entry(key, value)
t = time.perf_counter()
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
out["load_s"], out["session"] = time.perf_counter() - t, rss()
lat = size // 8
rng = np.random.default_rng(0)
feeds = {"sample": rng.standard_normal((2, 4, lat, lat)).astype(np.float32),
         "timestep": np.array([500.0, 500.0], np.float32),
         "encoder_hidden_states": rng.standard_normal((2, 77, 512)).astype(np.float32)}
seconds = []
for _ in range(calls):
    t = time.perf_counter()
    session.run(None, feeds)
    seconds.append(time.perf_counter() - t)
out["call_s"], out["after_calls"], out["peak"] = min(seconds), rss(), peak_rss_mib()
print(json.dumps(out))
"""


def probe(path: Path, size: int, calls: int, cfg: dict) -> dict:
    return json_child(["-c", _PROBE, str(path), str(size), str(calls), json.dumps(cfg)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="small")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--calls", type=int, default=2)
    args = parser.parse_args()
    onnx = random_sd_artifact(args.preset) / "unet.onnx"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        external = Path(tmp) / "unet.onnx"
        subprocess.run([sys.executable, "-c", f"import onnx; onnx.save_model(onnx.load({str(onnx)!r}), {str(external)!r}, "
                        "save_as_external_data=True, location='unet.onnx.data', size_threshold=1024)"], check=True)
        for name, cfg in CONFIGS.items():
            rows[name] = probe(external if cfg.get("external") else onnx, args.size, args.calls, cfg)
            print(f"{name:36s} " + " ".join(f"{k}={v:.2f}" if k.endswith("_s") else f"{k}={v:.0f}"
                                              for k, v in rows[name].items()), flush=True)
    save_result(f"ort_memory_{args.preset}_{args.size}", {"weights_mib": onnx.stat().st_size / 2**20,
                                                          "rss_mib": rows, "args": vars(args)})


if __name__ == "__main__":
    main()
