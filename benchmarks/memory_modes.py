"""`edgegen run` peak RSS, default vs low memory mode, on the small random-init SD (fresh processes).

    python benchmarks/memory_modes.py [--sizes 256 512] [--steps 4] [--precision fp32]

Each configuration is one `edgegen run` under GNU `/usr/bin/time -v`: the peak the CLI prints
(``VmHWM``, :func:`edgegen.memory.peak_rss_bytes`) is cross-checked with time's "Maximum resident
set size". A last process at the largest size records, in low mode over two calls, the RSS before
each component loads and after it is released (that the memory goes back), and the peak. (The
results file of commit 33737bc also holds the same with and without ``malloc_trim(0)`` after each
release: no measurable difference, so edgegen does not trim.)
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time

from common import json_child, random_sd_artifact, save_result

PEAK = re.compile(r"peak memory ([\d.]+) GiB \(process\), largest component (\w+) ([\d.]+) GiB"
                  r"(?:; largest stage (\w+) ([\d.]+) GiB \(weights \+ activations\) over a ([\d.]+) GiB base)?")


RELEASE_CHILD = """
import json, sys
from edgegen import Pipeline
from edgegen.memory import peak_rss_bytes, rss_bytes
art, size, steps, precision = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
pipe = Pipeline.load(art, memory="low", precision=precision)
calls = []
for _ in range(2):
    pipe("a lighthouse at dusk", num_inference_steps=steps, height=size, width=size, seed=1)
    calls.append({name: {"base": e.footprint.base / 2**30, "after_release": e.footprint.released / 2**30}
                  for name, e in pipe.engines.items()})
print(json.dumps({"rss_gib": calls, "rss_end_gib": rss_bytes() / 2**30,
                  "peak_gib": peak_rss_bytes() / 2**30}))
"""


def _release(art, size: int, steps: int, precision: str) -> dict:
    """Low mode in a fresh process, two calls: RSS before each load and after each release."""
    row = json_child(["-c", RELEASE_CHILD, str(art), str(size), str(steps), precision], timeout=900)
    print(json.dumps(row), flush=True)
    return row


def _run(art, size: int, memory: str, steps: int, precision: str) -> dict:
    """One `edgegen run` in a fresh process; its figures and GNU time's."""
    with tempfile.TemporaryDirectory() as out:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "edgegen", "run", str(art), "--out", out, "--prompt",
               "a lighthouse at dusk", "--steps", str(steps), "--height", str(size), "--width", str(size),
               "--memory", memory, "--precision", precision, "--seed", "1"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    m = PEAK.search(proc.stdout)
    gnu = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 2**20
    secs = float(re.search(r"in ([\d.]+) s \(", proc.stdout).group(1))
    row = {"size": size, "memory": memory, "precision": precision, "steps": steps, "peak_gib": float(m.group(1)),
           "time_v_max_rss_gib": gnu, "largest_component": m.group(2), "largest_component_gib": float(m.group(3)),
           "generation_s": secs, "process_wall_s": wall}
    if m.group(4):
        row.update(largest_stage=m.group(4), largest_stage_gib=float(m.group(5)), base_gib=float(m.group(6)))
    tiles = re.search(r"decoded in tiles of (\d+) px", proc.stdout)
    row["auto_tile_size"] = int(tiles.group(1)) if tiles else None
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    art = random_sd_artifact("small")
    rows = [_run(art, size, memory, args.steps, args.precision) for size in args.sizes for memory in ("default", "low")]
    size = max(args.sizes)
    release = _release(art, size, args.steps, args.precision)
    print("wrote", save_result(f"memory_modes_{args.precision}", {"artifact": "sd-small (random init)", "rows": rows,
                                                                  "release": release}))


if __name__ == "__main__":
    main()
