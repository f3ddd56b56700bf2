"""Helpers for benchmark scripts: machine description, artifact caching, result files."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))  # random_sd: random-init SD pipelines (a test fixture)


def printed(prefix: str = ""):
    """An edgegen progress callback that prints messages and finished stages, flushed."""
    def report(stage: str, done: int = 0, total: int | None = None) -> None:
        if total is None or done >= total:
            print(f"{prefix}{stage}" + (f" ({done}/{total})" if total else ""), file=sys.stderr, flush=True)
    return report


def machine() -> dict:
    """edgegen bench's machine description, plus the export-side library versions."""
    from edgegen.bench.run import machine as bench_machine

    info = bench_machine()
    for name in ("torch", "nncf", "diffusers"):
        try:
            info["versions"][name] = __import__(name).__version__
        except ImportError:
            pass
    return info


def random_sd_artifact(preset: str, *, int8: bool = False) -> Path:
    """Build (once) a random-init SD pipeline of ``preset`` size and export it; returns the artifact."""
    from edgegen.export import export_stable_diffusion
    from random_sd import build_random_sd

    source, art = CACHE / f"sd-{preset}-src", CACHE / f"sd-{preset}"
    if not (source / "model_index.json").exists():
        build_random_sd(source, preset, seed=0)
    if not (art / "edgegen.json").exists():
        export_stable_diffusion(source, art, progress=printed("  [export] "))
    return art


def json_child(args: list[str], *, env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python ARGS...`` in a fresh process (its peak memory its own) and return the JSON object
    it prints last; SystemExit with the end of its stderr when it fails."""
    import os
    import subprocess

    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
