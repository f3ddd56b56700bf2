"""ONNX Runtime: default session vs CPU memory arena and memory pattern off, seconds per U-Net call at
256 px, interleaved in one process (docs/memory.md). Needs benchmarks/.cache/sd-small (ov_memory.py builds it).

    python benchmarks/ort_speed.py
"""
import time, statistics, numpy as np, onnxruntime as ort
from pathlib import Path
path = str(Path(__file__).resolve().parent / ".cache" / "sd-small" / "unet.onnx")
def session(off):
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if off:
        o.enable_cpu_mem_arena = False; o.enable_mem_pattern = False
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
s = {"default": session(False), "off": session(True)}
rng = np.random.default_rng(0)
feeds = {"sample": rng.standard_normal((2, 4, 32, 32)).astype(np.float32), "timestep": np.array([500., 500.], np.float32),
         "encoder_hidden_states": rng.standard_normal((2, 77, 512)).astype(np.float32)}
for v in s.values(): v.run(None, feeds)
res = {k: [] for k in s}
for r in range(6):
    for k in (("default", "off") if r % 2 == 0 else ("off", "default")):
        w, c = time.perf_counter(), time.process_time(); s[k].run(None, feeds)
        res[k].append((time.perf_counter() - w, time.process_time() - c))
for k, v in res.items():
    print(k, "wall", round(statistics.median(x for x, _ in v), 3), "cpu", round(statistics.median(y for _, y in v), 3), [round(x, 2) for x, _ in v])
