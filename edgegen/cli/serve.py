"""`edgegen serve`: an OpenAI-compatible image service on Ray Serve (needs the serve extra)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import EdgegenError
from .common import Backend, parse_ints, reported, stdout
from .run import Precision


def _model(value: str) -> tuple[str, Path]:
    """'NAME=PATH' or 'PATH' (the model is then named after the directory)."""
    name, _, path = value.rpartition("=")
    path = Path(path)
    if not path.is_dir():
        raise typer.BadParameter(f"expected an artifact directory (or NAME=DIR), got '{value}'", param_hint="ARTIFACTS")
    return name or path.name, path


def serve(
    artifacts: Annotated[list[str], typer.Argument(help="Artifact directories (from `edgegen export`), each as DIR or NAME=DIR; the name is the request's `model`.")],
    replicas: Annotated[int, typer.Option(min=1, help="Replicas per model.")] = 1,
    autoscale: Annotated[Optional[str], typer.Option(help="MIN,MAX replicas per model, scaled by Ray Serve on load (replaces --replicas).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster to join (host:port of `ray start --head`, or 'auto'); default: start a local one.")] = None,
    host: Annotated[str, typer.Option(help="HTTP host to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    max_batch_size: Annotated[int, typer.Option(min=1, help="Requests merged into one engine batch (1: no batching).")] = 8,
    batch_wait_ms: Annotated[float, typer.Option(min=0, help="How long a replica waits to fill a batch.")] = 10.0,
    max_ongoing_requests: Annotated[int, typer.Option(min=1, help="Requests one replica holds at once.")] = 8,
    max_queued_requests: Annotated[int, typer.Option(help="Requests waiting per model beyond that; more are answered 503 + Retry-After (-1: unbounded).")] = 64,
    replica_cpus: Annotated[float, typer.Option(min=0, help="Ray CPUs each replica reserves (replicas that do not fit wait for the cluster to grow).")] = 1.0,
    backend: Annotated[Optional[Backend], typer.Option(help="Engine backend; default OpenVINO when installed.")] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Compute precision, as for `edgegen run`.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Stop after this many seconds (default: run until Ctrl-C).")] = None,
) -> None:
    """Serve artifacts over HTTP (POST /v1/images/generations, GET /v1/models, GET /health)."""
    with reported():
        from ..serve.cluster import require_ray

        require_ray(address)  # the serve extra: one line naming it, rather than an import traceback
        from ..serve.app import ServeOptions, start
        from ..serve.requests import ModelCard

        models = dict(_model(a) for a in artifacts)
        if len(models) != len(artifacts):
            raise EdgegenError(f"ARTIFACTS: expected distinct model names, got {sorted(models)} for {len(artifacts)} artifacts")
        scale = parse_ints(autoscale, "--autoscale", (2,))
        options = ServeOptions(replicas=replicas, autoscale=scale, max_batch_size=max_batch_size,
                               batch_wait_s=batch_wait_ms / 1000, max_ongoing_requests=max_ongoing_requests,
                               max_queued_requests=max_queued_requests, replica_cpus=replica_cpus,
                               backend=backend.value if backend else None,
                               precision=precision.value if precision else None)
        cards = {name: ModelCard.from_artifact(name, path.resolve()) for name, path in models.items()}
        url = start(cards, options, address=address, host=host, port=port)
        stdout(f"serving {', '.join(sorted(cards))} at {url} (POST /images/generations, GET /models); Ctrl-C stops")
        _wait(timeout)


def _wait(timeout: float | None) -> None:
    from ray import serve

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
