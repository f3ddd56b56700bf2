"""Offline batch jobs on a Ray cluster: many requests -> PNGs plus a JSONL index, resumable.

A job is a list of requests (one per line of a prompts file, or one JSON object per line of a
jobs file, with the fields of ``POST /v1/images/generations``). Ray tasks run chunks of them; each
worker process loads the pipeline once and keeps it for the next chunk. The driver writes each
request's PNGs (atomically) and then appends one index line per image::

    {"request": 3, "image": 0, "file": "000003-00.png", "sha256": "...", "seed": 3, ...}

so an interrupted job leaves only whole PNGs and whole lines (a torn last line is ignored). A
re-run skips requests whose images are all listed with a matching sha256, and computes the rest;
each request's bytes depend on nothing but the request (``edgegen.serve.generate``), so the final
set equals an uninterrupted run's, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..checksums import sha256_file
from ..errors import EdgegenError
from ..progress import ProgressCallback, silent
from .requests import ImageRequest, ModelCard, RequestError, parse_request

INDEX = "index.jsonl"
_PIPELINES: dict[tuple, Any] = {}


@dataclass(frozen=True)
class JobSummary:
    """What a job did: requests and images in the job, skipped as already written, written now."""

    requests: int
    images: int
    skipped: int
    written: int
    seconds: float
    out: Path

    def line(self) -> str:
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        return (f"wrote {self.written} image(s) to {self.out} in {self.seconds:.1f} s ({rate:.2f} images/s); "
                f"{self.skipped} already written and verified; index {self.out / INDEX}")


def read_requests(card: ModelCard, *, prompts: Path | None = None, jobs: Path | None = None,
                  defaults: Mapping[str, Any] | None = None) -> list[ImageRequest]:
    """Requests from a prompts file (one prompt per line; class-conditional models: a class name or
    label per line; blank lines skipped; seed = ``defaults['seed'] + line number``) or a JSONL jobs
    file (per-line fields override ``defaults``; seed defaults to the line number likewise).

    Raises:
        RequestError: naming the file, line and field.
    """
    defaults = {k: v for k, v in (defaults or {}).items() if v is not None and k not in _not_for(card)}
    base_seed = int(defaults.pop("seed", 0))
    path = prompts or jobs
    if path is None:
        raise RequestError("--prompts / --jobs", "a file", None)
    lines = [line for line in Path(path).read_text().splitlines() if line.strip()]
    requests = []
    for number, line in enumerate(lines):
        where = f"{path}: line {number + 1}"
        body = dict(defaults, seed=base_seed + number, model=card.name)
        if prompts:
            body.update(_prompt_fields(card, line.strip()))
        else:
            try:
                fields = json.loads(line)
            except ValueError:
                raise RequestError(where, "a JSON object", line) from None
            if not isinstance(fields, dict):
                raise RequestError(where, "a JSON object", fields)
            body.update(fields, model=card.name)
        try:
            requests.append(parse_request(body, {card.name: card}))
        except RequestError as exc:
            raise RequestError(f"{where}: {exc.field}", exc.expected, exc.got) from None
    return requests


def _not_for(card: ModelCard) -> set[str]:
    """Fields a model has no use for (a command's defaults for them are dropped, not refused)."""
    unused = set() if card.diffusion else {"steps", "sampler", "sigmas", "guidance_scale"}
    if card.family != "stable-diffusion":
        unused.add("negative_prompt")
    if not card.classes:
        unused.add("class_label")
    return unused


def _prompt_fields(card: ModelCard, line: str) -> dict[str, Any]:
    if card.classes and line.isdigit():
        return {"class_label": int(line)}
    return {"prompt": line}


def verified(out: Path, requests: list[ImageRequest]) -> set[int]:
    """Request numbers whose images are all in ``out/index.jsonl`` with a file of the listed sha256."""
    index = out / INDEX
    listed: dict[int, set[int]] = {}
    if index.is_file():
        for line in index.read_text().splitlines():
            try:
                entry = json.loads(line)
                file = out / entry["file"]
                if file.is_file() and sha256_file(file) == entry["sha256"]:
                    listed.setdefault(int(entry["request"]), set()).add(int(entry["image"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by an interrupted run
    return {i for i, r in enumerate(requests) if listed.get(i, set()) >= set(range(r.n))}


def _run_chunk(card: ModelCard, backend: str | None, precision: str | None,
               chunk: list[tuple[int, ImageRequest]]) -> list[tuple[int, list[bytes], dict]]:
    """A Ray task: each request of the chunk alone (so its bytes never depend on the chunking)."""
    from .. import Pipeline
    from .generate import generate

    key = (card.path, backend, precision)
    if key not in _PIPELINES:
        _PIPELINES[key] = Pipeline.load(card.path, backend=backend, precision=precision)
    out = []
    for number, request in chunk:
        result = generate(_PIPELINES[key], card, [request])[0]
        if isinstance(result, Exception):
            raise result
        out.append((number, result.pngs, result.info))
    return out


def run_job(card: ModelCard, requests: list[ImageRequest], out: str | Path, *, backend: str | None = None,
            precision: str | None = None, address: str | None = None, chunk_size: int = 4,
            max_in_flight: int | None = None, progress: ProgressCallback | None = None) -> JobSummary:
    """Run ``requests`` as Ray tasks, writing PNGs and the index as chunks finish; resumable.

    Args:
        card: the model (``ModelCard.from_artifact``); its path must exist on every Ray node.
        out: output directory (created).
        address: Ray cluster to join (``ray start --head`` address); None starts a local one.
        chunk_size: requests per Ray task.
        max_in_flight: tasks submitted ahead of the results (default: 2 per cluster CPU), which
            bounds the object store's share of PNGs waiting to be written.
        progress: ``progress("images", done, total)`` after each chunk.
    Returns:
        a :class:`JobSummary`.
    Raises:
        EdgegenError from a request that the pipeline refuses (the job stops; written images stay).
    """
    from .cluster import connect, require_ray

    start, report = time.perf_counter(), progress or silent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = verified(out, requests)
    todo = [(i, r) for i, r in enumerate(requests) if i not in done]
    total = sum(r.n for r in requests)
    skipped = finished = sum(requests[i].n for i in done)
    report("images", finished, total)
    connect(address)
    ray = require_ray(address)
    task = ray.remote(_run_chunk)
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    limit = max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending, written = [], 0
    with (out / INDEX).open("a") as index:
        while chunks or pending:
            while chunks and len(pending) < limit:
                pending.append(task.remote(card, backend, precision, chunks.pop(0)))
            ready, pending = ray.wait(pending, num_returns=1)
            for number, pngs, info in ray.get(ready[0]):
                written += _write(out, index, number, pngs, info)
                finished += len(pngs)
            report("images", finished, total)
    return JobSummary(len(requests), total, skipped, written, time.perf_counter() - start, out)


def _write(out: Path, index, number: int, pngs: list[bytes], info: Mapping[str, Any]) -> int:
    """PNG files first (atomic), then their index lines (flushed): a line never names a missing file."""
    from ..atomic import write_bytes_atomic

    lines = []
    for j, png in enumerate(pngs):
        name = f"{number:06d}-{j:02d}.png"
        write_bytes_atomic(out / name, png)
        lines.append(json.dumps({"request": number, "image": j, "file": name,
                                 "sha256": hashlib.sha256(png).hexdigest(), **_plain(info)}))
    index.write("".join(line + "\n" for line in lines))
    index.flush()
    return len(pngs)


def _plain(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in info.items()}


def job_from_cli(artifact: Path, out: Path, *, prompts: Path | None, jobs: Path | None, address: str | None,
                 backend: str | None, precision: str | None, defaults: Mapping[str, Any],
                 use_ray: bool = True, progress: ProgressCallback | None = None) -> JobSummary:
    """``edgegen run ART --prompts/--jobs FILE --ray``: read the requests, run the job."""
    if not use_ray:
        raise EdgegenError("--prompts / --jobs: run as Ray jobs; expected --ray as well, got neither")
    if (prompts is None) == (jobs is None):
        raise EdgegenError("--prompts / --jobs: expected exactly one of them with --ray, "
                           f"got {'both' if prompts else 'neither'}")
    from .cluster import require_ray

    require_ray(address)
    card = ModelCard.from_artifact(Path(artifact).name, Path(artifact).resolve())
    requests = read_requests(card, prompts=prompts, jobs=jobs, defaults=defaults)
    return run_job(card, requests, out, backend=backend, precision=precision, address=address, progress=progress)

