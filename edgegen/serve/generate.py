"""Requests -> PNG bytes on one loaded pipeline, merging compatible requests into one engine batch.

Same seed, same bytes, batched or not: each request's initial noise is its own
``numpy.random.default_rng(seed)`` draw of ``(n, *noise_shape)`` (the draw ``Pipeline(...,
seed=seed, num_images=n)`` makes itself), a merged batch concatenates those draws, and the
engines compute each image independently of its batch neighbours (checked by the tests on
OpenVINO and ONNX Runtime). Ancestral samplers (DDPM, Euler-a) draw step noise from one stream
per call, so their requests (and those leaving the sampler to the artifact's default) run alone,
seeded as ``edgegen run`` seeds them (``ImageRequest.batch_key`` is None). Used by the Ray Serve
deployments and by the offline Ray jobs alike; no Ray here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import EdgegenError
from ..images import png_bytes
from .requests import ImageRequest, ModelCard


@dataclass
class RequestResult:
    """One request's answer: ``pngs`` (one PNG per image, with ``edgegen run``'s text chunks) and the
    ``timings`` of the engine call that made them (``total_s``, ``engine_s``, ``batch_images``,
    ``batch_requests``)."""

    pngs: list[bytes]
    info: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)


def generate(pipe, card: ModelCard, requests: Sequence[ImageRequest]) -> list[RequestResult | EdgegenError]:
    """Answer ``requests`` in order, merging those with equal ``batch_key`` into one pipeline call.

    Args:
        pipe: a loaded ``edgegen.Pipeline`` for ``card``.
        requests: checked requests for ``card``'s model.
    Returns:
        one :class:`RequestResult` per request, or the ``EdgegenError`` (e.g. ``EngineInputError``)
        that request alone raised; a merged call that fails is retried request by request, so one
        bad request never fails its batch neighbours.
    """
    groups: dict[Any, list[int]] = {}
    for i, request in enumerate(requests):
        key = request.batch_key()
        groups.setdefault(("alone", i) if key is None else key, []).append(i)
    results: list[RequestResult | EdgegenError | None] = [None] * len(requests)
    for indices in groups.values():
        try:
            answers = run_group(pipe, card, [requests[i] for i in indices])
        except EdgegenError as exc:
            if len(indices) > 1:
                answers = [_alone(pipe, card, requests[i]) for i in indices]
            else:
                answers = [exc]
        for i, answer in zip(indices, answers):
            results[i] = answer
    return results


def _alone(pipe, card: ModelCard, request: ImageRequest) -> RequestResult | EdgegenError:
    try:
        return run_group(pipe, card, [request])[0]
    except EdgegenError as exc:
        return exc


def run_group(pipe, card: ModelCard, group: Sequence[ImageRequest]) -> list[RequestResult]:
    """One pipeline call for requests that share a batch key (or one ancestral-sampler request)."""
    first = group[0]
    size = dict(height=first.height, width=first.width)
    if not card.diffusion:
        generation = pipe(num_images=sum(r.n for r in group), seed=first.seed, latents=_noise(card, group), **size)
    elif first.batch_key() is None:
        generation = pipe(**_conditions(card, group), num_inference_steps=first.steps, sampler=first.sampler,
                          sigmas=first.sigmas, guidance_scale=first.guidance_scale, seed=first.seed,
                          num_images=first.n, **size)
    else:
        generation = pipe(**_conditions(card, group), num_inference_steps=first.steps, sampler=first.sampler,
                          sigmas=first.sigmas, guidance_scale=first.guidance_scale, seed=first.seed,
                          init_noise=_noise(card, group), **size)
    images = generation.uint8()
    timings = {"total_s": generation.timings.get("total_s"), "engine_s": generation.timings.get("engine_s"),
               "batch_images": int(images.shape[0]), "batch_requests": len(group)}
    results, offset = [], 0
    for request in group:
        info = request_info(generation.info, request, offset, images.shape[0])
        text = {k: v for k, v in info.items() if v is not None}
        pngs = [png_bytes(image, {**text, "index": j}) for j, image in enumerate(images[offset:offset + request.n])]
        results.append(RequestResult(pngs, info, timings))
        offset += request.n
    return results


def _noise(card: ModelCard, group: Sequence[ImageRequest]) -> np.ndarray:
    """(sum n, *noise_shape) float32: each request's own N(0, I) draw from its seed, concatenated."""
    shape = card.image_noise_shape(group[0].height, group[0].width)
    return np.concatenate([np.random.default_rng(r.seed).standard_normal((r.n, *shape), dtype=np.float32)
                           for r in group])


def _conditions(card: ModelCard, group: Sequence[ImageRequest]) -> dict[str, Any]:
    """Per-image prompts (SD) or class labels (class-conditional U-Nets) for a pipeline call."""
    if card.family == "stable-diffusion":
        return {"prompt": [r.prompt or "" for r in group for _ in range(r.n)],
                "negative_prompt": [r.negative_prompt or "" for r in group for _ in range(r.n)]}
    if card.classes:
        return {"class_label": [label for r in group for label in r.class_labels]}
    return {}


def request_info(info: dict[str, Any], request: ImageRequest, offset: int, total: int) -> dict[str, Any]:
    """The PNG text of one request's images: the call's ``info`` with this request's seed, prompt and
    labels (per-image comma lists sliced to its images), so merged and lone calls write the same text."""
    out = dict(info, seed=request.seed)
    if "prompt" in out and request.class_labels is None and request.prompt is not None:
        out.update(prompt=request.prompt, negative_prompt=request.negative_prompt)
    for key in ("class_labels", "prompt"):
        value = out.get(key)
        if request.class_labels is not None and isinstance(value, str) and value.count(",") == total - 1:
            out[key] = ",".join(value.split(",")[offset:offset + request.n])
    return out
