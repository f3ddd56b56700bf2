"""The Ray Serve application: one ``Generator`` deployment per artifact behind one HTTP ingress.

Routes (OpenAI's images API, so ``openai.OpenAI(base_url=".../v1").images.generate(...)`` works):
``POST /v1/images/generations``, ``GET /v1/models``, ``GET /health``.

Ray Serve does the serving work: HTTP, routing to replicas, queue limits
(``max_ongoing_requests`` per replica, ``max_queued_requests`` per caller), dynamic batching
(``@serve.batch``), replica restarts and autoscaling. This module only maps requests and errors:

- 400 (404 for ``model``): a field failed :func:`edgegen.serve.requests.parse_request`, or the
  pipeline refused the request (a ``ValueError`` such as ``EngineInputError``); the message and
  ``error.param`` name the field.
- 503 + ``Retry-After``: the model's queue is full (Ray's ``BackPressureError``), or its replica
  died twice in a row.
- 500: anything else (e.g. ``NonFiniteError`` from an engine), with the exception's type and message.
- A replica that dies mid-request is retried once on another (or restarted) replica; so every
  request gets exactly one answer.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at run time.
import asyncio
import base64
import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError

from ..errors import EdgegenError
from . import responses
from .generate import RequestResult, generate
from .requests import ImageRequest, ModelCard, RequestError, parse_request

@dataclass(frozen=True)
class ServeOptions:
    """How each model is deployed.

    Attributes:
        replicas: replicas per model (ignored when ``autoscale`` is given).
        autoscale: (min, max) replicas, scaled by Ray Serve on ongoing requests per replica.
        max_batch_size: requests merged into one engine batch (1 = no batching).
        batch_wait_s: how long a replica waits to fill a batch.
        max_ongoing_requests: requests one replica holds at once (raised to ``max_batch_size``).
        max_queued_requests: requests waiting per model beyond that; more get 503 (-1: unbounded).
        replica_cpus: Ray CPUs each replica reserves.
        backend, precision: as for ``edgegen run``.
    """

    replicas: int = 1
    autoscale: Optional[tuple[int, int]] = None
    max_batch_size: int = 8
    batch_wait_s: float = 0.01
    max_ongoing_requests: int = 8
    max_queued_requests: int = 64
    replica_cpus: float = 1.0
    backend: Optional[str] = None
    precision: Optional[str] = None


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Generator:
    """One artifact's pipeline, loaded once per replica; compatible requests are batched."""

    def __init__(self, card: ModelCard, backend: str | None, precision: str | None, max_batch_size: int,
                 batch_wait_s: float):
        from .. import Pipeline

        self.card = card
        # Batches vary in size request by request: one dynamic compile, not one static model per size.
        self.pipe = Pipeline.load(card.path, backend=backend, precision=precision, shapes="dynamic")
        self.generate_batch.set_max_batch_size(max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(batch_wait_s)

    def pid(self) -> int:
        """The replica's process id (tests kill it)."""
        return os.getpid()

    async def __call__(self, request: ImageRequest) -> RequestResult:
        result = await self.generate_batch(request)
        if isinstance(result, Exception):
            raise result
        return result

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def generate_batch(self, requests: list[ImageRequest]) -> list[RequestResult | EdgegenError]:
        # A worker thread keeps the replica's event loop free to queue the next batch meanwhile.
        return await asyncio.to_thread(generate, self.pipe, self.card, requests)


api = FastAPI(title="edgegen", description="OpenAI-compatible image generation on edgegen artifacts")


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress(api)
class ImagesAPI:
    """The HTTP ingress: checks requests, routes them to the model's deployment, maps errors."""

    def __init__(self, cards: Mapping[str, ModelCard], generators: Mapping[str, Any]):
        self.cards = dict(cards)
        self.generators = dict(generators)

    @api.get("/health")
    def health(self) -> dict:
        return {"status": "ok", "models": sorted(self.cards)}

    @api.get("/v1/models")
    def models(self) -> dict:
        return {"object": "list", "data": [self.cards[name].to_openai() for name in sorted(self.cards)]}

    @api.post("/v1/images/generations")
    async def generations(self, raw: Request) -> JSONResponse:
        try:
            body = await raw.json()
        except ValueError:
            return responses.error(400, "body: expected a JSON object, got text that is not JSON", "body")
        try:
            request = parse_request(body, self.cards)
        except RequestError as exc:
            return responses.error(404 if exc.field == "model" else 400, str(exc), exc.field)
        return await self._answer(request)

    async def _answer(self, request: ImageRequest) -> JSONResponse:
        handle = self.generators[request.model]
        for attempt in (1, 2):
            try:
                result = await handle.remote(request)
                break
            except BackPressureError:
                return responses.error(503, f"model '{request.model}': queue full, retry later", None,
                                      "server_overloaded")
            except RayActorError as exc:
                if attempt == 2:
                    return responses.error(503, f"model '{request.model}': replica died twice ({type(exc).__name__})",
                                          None, "replica_failed")
            except ValueError as exc:  # EngineInputError & co: the model refuses what was asked
                field = str(exc).split(":", 1)[0] if ":" in str(exc) else None
                return responses.error(400, str(exc), field)
            except Exception as exc:  # noqa: BLE001 - any other failure still gets one clear answer
                return responses.error(500, f"model '{request.model}': {type(exc).__name__}: {exc}", None,
                                       "server_error")
        data = [{"b64_json": base64.b64encode(png).decode("ascii")} for png in result.pngs]
        return JSONResponse({"created": int(time.time()), "data": data, "timings": result.timings,
                             "info": result.info})


def build_app(cards: Mapping[str, ModelCard], options: Union[ServeOptions, Mapping[str, ServeOptions]]):
    """The bound Ray Serve application: a ``Generator`` deployment per card plus the ingress.

    ``options``: one :class:`ServeOptions` for every model, or one per model name.
    """
    generators = {}
    for name, card in cards.items():
        opts = options if isinstance(options, ServeOptions) else options[name]
        scale = ({"autoscaling_config": {"min_replicas": opts.autoscale[0], "max_replicas": opts.autoscale[1],
                                         "target_ongoing_requests": max(1, opts.max_batch_size)}}
                 if opts.autoscale else {"num_replicas": opts.replicas})
        deployment = Generator.options(
            name=f"generator-{name}", ray_actor_options={"num_cpus": opts.replica_cpus},
            max_ongoing_requests=max(opts.max_ongoing_requests, opts.max_batch_size),
            max_queued_requests=opts.max_queued_requests, **scale)
        generators[name] = deployment.bind(card, opts.backend, opts.precision, opts.max_batch_size, opts.batch_wait_s)
    return ImagesAPI.bind(cards, generators)


def start(cards: Mapping[str, ModelCard], options: Union[ServeOptions, Mapping[str, ServeOptions]], *, address: str | None = None,
          host: str = "127.0.0.1", port: int = 8000, app_name: str = "edgegen", route_prefix: str = "/") -> str:
    """Deploy the application on the Ray cluster at ``address`` (None: a local one) and return its
    OpenAI base URL. Returns once every replica has loaded its pipeline; the service runs until
    ``ray.serve.shutdown()`` or the cluster stops. Raises BackendUnavailableError without Ray."""
    from .cluster import connect

    connect(address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(cards, options), name=app_name, route_prefix=route_prefix)
    return f"http://{host}:{port}{route_prefix.rstrip('/')}/v1"
