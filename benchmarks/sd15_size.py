"""SD 1.5 at full size (860M-param U-Net, random weights, 512x512, CFG, DDIM): the memory and
load-time figures of issue 12, each configuration in its own process. Slow (tens of minutes on
2 cores, ~10 GB RAM): not in CI.

    python benchmarks/sd15_size.py [--steps 3] [--only export,load,run,static,cli]

Phases (results in benchmarks/results/sd15_size.json):
  export  `export_stable_diffusion(..., int8=...)` (FP32 export + INT8 quantize, as
          `edgegen export --model sd --int8`): wall time, peak RSS, RSS and seconds per stage.
  load    INT8 and FP32 pipeline load with an empty OpenVINO model cache (cold) and again (warm),
          shapes auto (static U-Net: compiled at its first call, counted in "ready_s") and dynamic.
  run     one 512x512 image, CFG: FP32 default mode, INT8 default mode, INT8 low-memory mode, FP32
          low-memory mode: peak RSS, seconds per step (U-Net calls) and per image.
  static  seconds per U-Net call at 512 px (CFG batch 2), static vs dynamic OpenVINO shapes,
          FP32 and INT8.
  cli     `edgegen run --precision int8 --memory low` under /usr/bin/time -v.

Peak RSS of every phase is the child's own VmHWM (psutil would report the same), cross-checked
with GNU time's "Maximum resident set size" of the same child.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE, save_result

GIB = 1024 ** 3
PROMPT = "a photograph of an astronaut riding a horse"
PRELUDE = """
import json, os, sys, time
sys.path.insert(0, {tests!r}); sys.path.insert(0, {bench!r})
"""
EPILOGUE = """
from edgegen.bench.worker import peak_rss_mib as _peak
print(json.dumps({**_result, "peak_rss_gb": _peak() / 1024}))
"""


def _gnu_time_rss_gb(stderr: str) -> float | None:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return int(match.group(1)) * 1024 / GIB if match else None


def _child(argv: list[str], env: dict | None = None) -> tuple[str, float | None, float]:
    """Run argv under /usr/bin/time -v (when present), its stderr going to ``.cache/sd15_size.log``
    as it comes (``tail -f`` it); returns (stdout, GNU time peak RSS GiB, seconds)."""
    timed = ["/usr/bin/time", "-v", *argv] if Path("/usr/bin/time").exists() else argv
    log = CACHE / "sd15_size.log"
    CACHE.mkdir(exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(timed, stdout=subprocess.PIPE, stderr=err, text=True,
                              env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - start
    stderr = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:3])} failed ({proc.returncode}):\n{stderr[-4000:]}")
    return proc.stdout, _gnu_time_rss_gb(stderr), seconds


def _phase(code: str, env: dict | None = None) -> dict:
    """Run python code in a fresh process; it sets ``_result``; returns it with the peak RSS added."""
    here = Path(__file__).resolve().parent
    source = PRELUDE.format(tests=str(here.parent / "tests"), bench=str(here)) + code + EPILOGUE
    stdout, gnu_rss, seconds = _child([sys.executable, "-c", source], env)
    result = json.loads(stdout.strip().splitlines()[-1])
    return {**result, "gnu_time_peak_rss_gb": gnu_rss, "process_s": seconds}


EXPORT = """
import psutil, threading
from edgegen.export import export_stable_diffusion
from edgegen.calibration.int8 import Int8Options
proc, stages, peak = psutil.Process(), [], [0]
def sample():
    while True:
        peak[0] = max(peak[0], proc.memory_info().rss); time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
def report(stage, done=0, total=None):
    rss = proc.memory_info().rss
    if not stages or stages[-1]["stage"] != stage.split(" (")[0]:
        if stages:
            stages[-1]["seconds"] = time.perf_counter() - stages[-1].pop("_t")
            stages[-1]["peak_rss_gb"] = peak[0] / 2**30
        peak[0] = rss
        stages.append({{"stage": stage.split(" (")[0], "_t": time.perf_counter()}})
        kinds = {{l.split(":")[0]: int(l.split()[1]) / 2**20 for l in open("/proc/self/status")
                 if l.startswith(("RssAnon", "RssFile"))}}
        print(f"  [export] {{stage}} rss {{rss / 2**30:.2f}} GiB (anon {{kinds.get('RssAnon', 0):.2f}}, "
              f"file {{kinds.get('RssFile', 0):.2f}})", file=sys.stderr, flush=True)
t = time.perf_counter()
export_stable_diffusion({src!r}, {art!r}, progress=report,
    int8=Int8Options(samples=1, steps={steps}, gate_samples=1, force=True, height=512, width=512,
                     min_psnr=0, min_ssim=0, max_step_error=1.0))
stages[-1]["seconds"] = time.perf_counter() - stages[-1].pop("_t"); stages[-1]["peak_rss_gb"] = peak[0] / 2**30
m = json.load(open(os.path.join({art!r}, "edgegen.json")))
q = m["quantization"]["int8"]
_result = {{"seconds": time.perf_counter() - t, "stages": stages, "speed_gate": q["speed"].get("unet"),
           "gate": q["rounds"][-1]["figures"]}}
"""

LOAD = """
import numpy as np
from edgegen.pipelines import Pipeline
t = time.perf_counter()
pipe = Pipeline.load({art!r}, backend="openvino", precision={precision!r}, shapes={shapes!r})
load_s = time.perf_counter() - t
unet = pipe.unet
rng = np.random.default_rng(0)
feeds = {{"sample": rng.standard_normal((2, unet.input("sample").shape[1], 64, 64), dtype=np.float32),
          "timestep": np.full((2,), 500, dtype=unet.input("timestep").dtype),
          "encoder_hidden_states": rng.standard_normal((2, 77, unet.input("encoder_hidden_states").shape[-1]),
                                                       dtype=np.float32)}}
calls = []
for _ in range(2):
    t = time.perf_counter(); unet(feeds); calls.append(time.perf_counter() - t)
# Static shapes compile the U-Net at its first call: "ready" counts that compilation as loading.
_result = {{"load_s": load_s, "first_call_s": calls[0], "second_call_s": calls[1],
           "ready_s": load_s + max(calls[0] - calls[1], 0.0)}}
"""

RUN = """
import numpy as np
from edgegen.pipelines import Pipeline
t = time.perf_counter()
pipe = Pipeline.load({art!r}, backend="openvino", precision={precision!r}, **{load_kw!r})
load_s = time.perf_counter() - t
t = time.perf_counter()
gen = pipe({prompt!r}, num_inference_steps={steps}, sampler="ddim", guidance_scale=7.5, seed=0,
           height=512, width=512)
image_s = time.perf_counter() - t
assert np.isfinite(gen.images).all()
engines = gen.timings["engines"]
unet = engines["unet"]
_result = {{"load_s": load_s, "image_s": image_s, "unet_calls": unet["calls"],
           "step_s": unet["seconds"] / max(unet["calls"], 1),
           "engines": engines, "info": {{k: v for k, v in gen.info.items() if isinstance(v, (str, int, float))}}}}
"""

STATIC = """
import numpy as np
from edgegen.pipelines import Pipeline
pipe = Pipeline.load({art!r}, backend="openvino", precision={precision!r}, shapes={shapes!r})
unet = pipe.unet
rng = np.random.default_rng(0)
hidden = unet.input("encoder_hidden_states").shape[-1]
channels = unet.input("sample").shape[1]
feeds = {{"sample": rng.standard_normal((2, channels, 64, 64), dtype=np.float32),
          "timestep": np.full((2,), 500, dtype=unet.input("timestep").dtype),
          "encoder_hidden_states": rng.standard_normal((2, 77, hidden), dtype=np.float32)}}
t = time.perf_counter(); unet(feeds); first = time.perf_counter() - t
times = []
for _ in range({repeats}):
    t = time.perf_counter(); unet(feeds); times.append(time.perf_counter() - t)
_result = {{"first_call_s": first, "call_s_median": float(np.median(times)), "call_s_all": times}}
"""


def export_phase(src: Path, art: Path, steps: int) -> dict:
    if art.exists():
        shutil.rmtree(art)
    return _phase(EXPORT.format(src=str(src), art=str(art), steps=steps))


def load_phase(art: Path) -> dict:
    """Cold (empty model cache) then warm load, INT8 and FP32, each in a fresh process."""
    out = {}
    for precision in ("int8", None):
        for shapes in ("auto", "dynamic"):
            cache = Path(tempfile.mkdtemp(prefix="edgegen-ovcache-"))
            env = {"EDGEGEN_CACHE_DIR": str(cache)}
            code = LOAD.format(art=str(art), precision=precision, shapes=shapes)
            out[f"{precision or 'fp32'}_{shapes}"] = {"cold": _phase(code, env), "warm": _phase(code, env)}
            shutil.rmtree(cache, ignore_errors=True)
    return out


RUN_CONFIGS = {  # name -> (precision, Pipeline.load keywords)
    "fp32_default": (None, {}),
    "int8_default": ("int8", {}),
    "int8_low": ("int8", {"memory": "low"}),
    "fp32_low": (None, {"memory": "low"}),
}


def run_phase(art: Path, steps: int) -> dict:
    return {name: _phase(RUN.format(art=str(art), precision=precision, load_kw=kw, prompt=PROMPT, steps=steps))
            for name, (precision, kw) in RUN_CONFIGS.items()}


def static_phase(art: Path, repeats: int) -> dict:
    """Static vs dynamic, interleaved by precision so machine drift hits both alike."""
    out = {}
    for precision in ("int8", None):
        for shapes in ("static", "dynamic"):
            out[f"{precision or 'fp32'}_{shapes}"] = _phase(
                STATIC.format(art=str(art), precision=precision, shapes=shapes, repeats=repeats))
    return out


def cli_phase(art: Path, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        stdout, rss, seconds = _child(["edgegen", "run", str(art), "--prompt", PROMPT, "--steps", str(steps),
                                       "--sampler", "ddim", "--height", "512", "--width", "512",
                                       "--precision", "int8", "--memory", "low", "--backend", "openvino",
                                       "--out", out])
    return {"command": f"edgegen run ART --prompt ... --steps {steps} --height 512 --width 512 "
                       "--precision int8 --memory low --backend openvino",
            "gnu_time_peak_rss_gb": rss, "seconds": seconds, "stdout": stdout.strip().splitlines()[-3:]}


def _summary(results: dict) -> None:
    if "export" in results:
        e = results["export"]
        print(f"export --int8: {e['seconds']:.0f} s, peak RSS {e['peak_rss_gb']:.2f} GiB "
              f"(GNU time {e['gnu_time_peak_rss_gb'] or 0:.2f}; goal <= 10 GB)")
        for s in e["stages"]:
            print(f"  {s['stage'][:60]:60s} {s.get('seconds', 0):8.1f} s  peak {s.get('peak_rss_gb', 0):.2f} GiB")
    for name, r in results.get("run", {}).items():
        print(f"run {name:13s} peak RSS {r['peak_rss_gb']:.2f} GiB (GNU time {r['gnu_time_peak_rss_gb'] or 0:.2f}), "
              f"load {r['load_s']:.1f} s, {r['step_s']:.2f} s/step, {r['image_s']:.1f} s/image")
    for name, r in results.get("load", {}).items():
        print(f"load {name}: cold {r['cold']['load_s']:.2f} s (ready {r['cold']['ready_s']:.2f} s), "
              f"warm {r['warm']['load_s']:.2f} s (ready {r['warm']['ready_s']:.2f} s)")
    s = results.get("static", {})
    for p in ("fp32", "int8"):
        if f"{p}_static" in s:
            st, dy = s[f"{p}_static"]["call_s_median"], s[f"{p}_dynamic"]["call_s_median"]
            print(f"U-Net call {p}: static {st:.2f} s, dynamic {dy:.2f} s, dynamic/static {dy / st:.2f}x")
    if "cli" in results:
        print(f"edgegen run INT8 --memory low: peak RSS {results['cli']['gnu_time_peak_rss_gb']:.2f} GiB (GNU time)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3, help="sampling steps of each run (and INT8 calibration)")
    parser.add_argument("--repeats", type=int, default=3, help="U-Net calls timed per static/dynamic setting")
    parser.add_argument("--only", default="export,load,run,static,cli")
    parser.add_argument("--preset", default="sd15", help="random_sd preset (a smaller one to try the script)")
    args = parser.parse_args()
    phases = args.only.split(",")
    src, art = CACHE / f"sd-{args.preset}-src", CACHE / f"sd-{args.preset}"
    results = {}
    if not (src / "model_index.json").exists():
        results["build"] = _phase(f"from random_sd import build_random_sd\nt = time.perf_counter()\n"
                                  f"build_random_sd({str(src)!r}, {args.preset!r})\n_result = {{'seconds': time.perf_counter() - t}}")
    if "export" in phases:
        results["export"] = export_phase(src, art, args.steps)
    if "load" in phases:
        results["load"] = load_phase(art)
    if "run" in phases:
        results["run"] = run_phase(art, args.steps)
    if "static" in phases:
        results["static"] = static_phase(art, args.repeats)
    if "cli" in phases:
        results["cli"] = cli_phase(art, args.steps)
    _summary(results)
    previous = {}
    name = "sd15_size" if args.preset == "sd15" else f"sd15_size_{args.preset}"
    path = Path(__file__).resolve().parent / "results" / f"{name}.json"
    if path.exists() and set(phases) != {"export", "load", "run", "static", "cli"}:
        previous = json.loads(path.read_text()).get("results", {})
    print(f"results: {save_result(name, {'steps': args.steps, 'results': {**previous, **results}})}")


if __name__ == "__main__":
    main()
