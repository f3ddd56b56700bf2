"""The serve_load suite: `edgegen serve` under load on a local Ray cluster, against `edgegen run`'s
way of working (one process, one pipeline call per request) on the same requests.

    python benchmarks/serve_load.py [--requests 32] [--address HOST:PORT]

For the bundled digit U-Net (32 px, DDIM 20 steps, CFG 3) and the small random SD (51M-param
U-Net, 64 px, DDIM 4 steps, CFG 7.5): N requests (one image each, distinct seeds) at concurrency
1, 4 and 16, against 1 and 2 replicas, with batching off (max batch 1) and on (max batch 8).
Reports throughput (images/s), p50 / p99 latency, answered / sent (must be equal), and each
figure's ratio to `edgegen run` in one fresh process, one pipeline call per image (also measured:
`--batch-size 8`); writes results/serve_load.json.

With ``--address`` the same command runs against a multi-node cluster (see docs/serve.md); the
artifacts must then exist at the same path on every node.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import numpy as np

from common import CACHE, random_sd_artifact, save_result

CONCURRENCY = (1, 4, 16)
LAYOUTS = [(1, 1), (1, 8), (2, 1), (2, 8)]  # (replicas, max batch size)
MODELS = {"digits": {"steps": 20, "sampler": "ddim", "guidance_scale": 3.0},
          "sd-small": {"steps": 4, "sampler": "ddim", "guidance_scale": 7.5, "size": "64x64", "prompt": "a lighthouse"}}


def artifacts() -> dict:
    from edgegen.demo import export_zoo

    zoo = CACHE / "zoo"
    if not (zoo / "digits-diffusion" / "edgegen.json").exists():
        export_zoo(zoo, int8=False, progress=lambda stage, done=0, total=None: print(f"  [export] {stage}", flush=True))
    return {"digits": zoo / "digits-diffusion", "sd-small": random_sd_artifact("small")}


def bodies(model: str, n: int) -> list[dict]:
    labels = model == "digits"
    return [{"model": model, "seed": i, **MODELS[model], **({"class_label": i % 10} if labels else {})}
            for i in range(n)]


def one_process(path, model: str, n: int, batch_size: int) -> dict:
    """The baseline: `edgegen run` in a fresh process, N images with --batch-size images per
    pipeline call; its reported time is the sum of the pipeline calls (no load, no PNG writes)."""
    options = {"steps": "--steps", "sampler": "--sampler", "guidance_scale": "--guidance-scale", "prompt": "--prompt"}
    args = [a for k, flag in options.items() if k in MODELS[model] for a in (flag, str(MODELS[model][k]))]
    if "size" in MODELS[model]:
        width, height = MODELS[model]["size"].split("x")
        args += ["--width", width, "--height", height]
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([sys.executable, "-m", "edgegen", "run", str(path), "--num-images", str(n), "--batch-size",
                               str(batch_size), "--out", out, *args], capture_output=True, text=True, timeout=1800,
                              check=True)
    seconds = float(re.search(r" in ([0-9.]+) s", proc.stdout)[1])
    return {"batch_size": batch_size, "images_per_s": n / seconds, "seconds_per_image": seconds / n}


def post(url: str, body: dict) -> tuple[int, float]:
    data = json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/images/generations", data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0  # no HTTP answer at all: counted as not answered
    return status, time.perf_counter() - start


def load(url: str, requests: list[dict], concurrency: int) -> dict:
    """Send every request with ``concurrency`` in flight (a bounded client, not part of the service)."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        answers = list(pool.map(lambda b: post(url, b), requests))
    seconds = time.perf_counter() - start
    ok = [latency for status, latency in answers if status == 200]
    return {"concurrency": concurrency, "sent": len(requests), "answered": sum(1 for s, _ in answers if s),
            "ok": len(ok), "statuses": sorted({s for s, _ in answers}), "seconds": seconds,
            "images_per_s": len(ok) / seconds, "p50_s": float(np.percentile(ok, 50)) if ok else None,
            "p99_s": float(np.percentile(ok, 99)) if ok else None}


def baseline(path, model: str, n: int) -> list[dict]:
    """`edgegen run` one process, one image per call and 8 per call (measured before and after the
    served runs: on a shared machine the drift between the two is the noise floor)."""
    runs = [one_process(path, model, n, b) for b in (1, 8)]
    print(f"{model}: edgegen run, one process: " + ", ".join(
        f"batch {b['batch_size']} {b['images_per_s']:.2f} images/s" for b in runs), flush=True)
    return runs


def serve_model(model: str, path, n: int, port: int, reference: list[dict]) -> list[dict]:
    """Every (replicas, max batch) layout at every concurrency; ratios to ``reference[0]`` (batch 1)."""
    from ray import serve

    from edgegen.serve.app import ServeOptions, start
    from edgegen.serve.requests import ModelCard

    card, rows = {model: ModelCard.from_artifact(model, path)}, []
    for replicas, batch in LAYOUTS:
        # max_ongoing_requests 16: every layout lets requests wait in the replica's batch queue, so
        # the layouts differ only in replicas and max batch size (edgegen serve's defaults: 8 / 8).
        options = ServeOptions(replicas=replicas, max_batch_size=batch, batch_wait_s=0.005,
                               max_ongoing_requests=16, max_queued_requests=-1, replica_cpus=0)
        url = start(card, options, port=port)
        post(url, bodies(model, 1)[0])  # every replica loads at deploy; this warms one
        for concurrency in CONCURRENCY:
            row = load(url, bodies(model, n), concurrency)
            row.update(model=model, replicas=replicas, max_batch_size=batch,
                       throughput_ratio=row["images_per_s"] / reference[0]["images_per_s"],
                       p50_ratio=row["p50_s"] / reference[0]["seconds_per_image"] if row["p50_s"] else None)
            rows.append(row)
            print(f"{model:8s} replicas {replicas} batch {batch} conc {concurrency:2d}: "
                  f"{row['images_per_s']:.2f} images/s ({row['throughput_ratio']:.2f}x edgegen run), "
                  f"p50 {row['p50_s']:.3f} s p99 {row['p99_s']:.3f} s, answered {row['answered']}/{row['sent']}",
                  flush=True)
        serve.delete("edgegen")
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=32, help="requests per measurement (N)")
    parser.add_argument("--address", default=None, help="Ray cluster to join; default: a local one (2 CPUs)")
    parser.add_argument("--models", default="digits,sd-small")
    args = parser.parse_args()
    from edgegen.serve.cluster import connect

    connect(args.address, num_cpus=2, object_store_memory=200 * 2**20)  # before ray is imported: loopback
    import ray
    from ray import serve

    paths = artifacts()
    models = args.models.split(",")
    rows, baselines, port = [], {}, free_port()
    try:
        for model in models:
            before = baseline(paths[model], model, args.requests)
            rows += serve_model(model, paths[model], args.requests, port, before)
            baselines[model] = {"before": before, "after": baseline(paths[model], model, args.requests)}
    finally:
        serve.shutdown()
        ray.shutdown()
    lost = [r for r in rows if r["answered"] != r["sent"]]
    print(f"answered == sent in {len(rows) - len(lost)} of {len(rows)} measurements")
    path = save_result("serve_load", {"requests": args.requests, "models": MODELS, "edgegen_run_one_process": baselines,
                                      "results": rows})
    print(f"results: {path}")
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
