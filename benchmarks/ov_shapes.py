"""Static vs dynamic OpenVINO shapes: seconds per U-Net call (CFG batch 2) at two image sizes, FP32
(IR with FP16-stored weights, as ``edgegen export`` writes it) and INT8, interleaved repeats in one
process so both modes see the same machine load. Also the first static call's compile time with a
cold and a warm model cache. The figures decide ``shapes="auto"`` (docs/memory.md).

    python benchmarks/ov_shapes.py [--repeats 5] [--sizes 512 256]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from common import CACHE, random_sd_artifact, save_result
from ov_memory import convert


def feeds(size: int, dtype=np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lat = size // 8
    return {"sample": rng.standard_normal((2, 4, lat, lat)).astype(dtype),
            "timestep": np.array([500.0, 500.0], np.float32),
            "encoder_hidden_states": rng.standard_normal((2, 77, 512)).astype(dtype)}


def timed(engine, feed) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    engine(feed)
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(path: Path, sizes: list[int], repeats: int, cache: Path) -> dict:
    from edgegen.runtimes.openvino import OpenVinoEngine

    out = {}
    for size in sizes:
        feed = feeds(size)
        dynamic = OpenVinoEngine(path, cache_dir=cache)
        t = time.perf_counter()
        cold = OpenVinoEngine(path, cache_dir=cache, static=True)
        cold(feed)
        first_cold = time.perf_counter() - t
        del cold
        t = time.perf_counter()
        static = OpenVinoEngine(path, cache_dir=cache, static=True)
        static(feed)
        first_warm = time.perf_counter() - t
        dynamic(feed)  # warm-up
        a, b = next(iter(static(feed).values())), next(iter(dynamic(feed).values()))
        out[f"{size}_max_abs_static_vs_dynamic"] = float(np.abs(a - b).max())
        rows = {"static": [], "dynamic": []}
        for r in range(repeats):
            for mode in (("static", "dynamic") if r % 2 == 0 else ("dynamic", "static")):
                rows[mode].append(timed(static if mode == "static" else dynamic, feed))
        out[size] = {mode: {"wall_s": statistics.median(w for w, _ in v), "cpu_s": statistics.median(c for _, c in v),
                            "wall_all": [round(w, 3) for w, _ in v]} for mode, v in rows.items()}
        out[size]["static_first_call_s"] = {"cold_cache": first_cold, "warm_cache": first_warm}
        print(size, out[size], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--int8-xml", type=Path, default=CACHE / "sd-small-int8-openvino" / "unet.int8.xml",
                        help="the INT8 U-Net (sd_small.py's int8_artifact('openvino') writes the default)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        if "fp32" in args.precisions:
            xml = Path(tmp) / "unet.xml"
            convert(random_sd_artifact("small") / "unet.onnx", xml, True)
            results["fp32"] = compare(xml, args.sizes, args.repeats, cache)
        if "int8" in args.precisions:
            results["int8"] = compare(args.int8_xml, args.sizes, args.repeats, cache)
    save_result("ov_shapes_small_" + "_".join(args.precisions), {"seconds_per_unet_call": results,
                                                                   "args": {k: str(v) for k, v in vars(args).items()}})


if __name__ == "__main__":
    main()
