"""The images request, checked once at the service boundary (no Ray here).

The body is OpenAI's ``POST /v1/images/generations`` (``model``, ``prompt``, ``n``, ``size``
"WxH", ``response_format`` ``b64_json``) plus edgegen's own fields (``negative_prompt``, ``seed``,
``steps``, ``sampler``, ``guidance_scale``, ``class_label``). Defaults are ``edgegen run``'s, so a
request and the command with the same options give the same images. Every error is a
:class:`RequestError` naming the field, the expected and the received value.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import EdgegenError
from ..types import Sampler, SigmaSchedule

SAMPLERS = tuple(s.value for s in Sampler)
SIGMAS = tuple(s.value for s in SigmaSchedule)
# Samplers that draw fresh noise at every step: one noise stream per engine batch, so requests
# using them are never merged (a merged batch would change their bytes).
ANCESTRAL = frozenset({Sampler.ddpm.value, Sampler.euler_a.value, Sampler.lcm.value})
MAX_IMAGES = 16
MAX_STEPS = 1000
MAX_SIDE = 2048
# OpenAI fields the service accepts and ignores (they have no meaning for these models).
IGNORED = frozenset({"quality", "style", "user", "background", "moderation"})
FIELDS = frozenset({"model", "prompt", "n", "size", "response_format", "negative_prompt", "seed", "steps",
                    "sampler", "sigmas", "guidance_scale", "class_label"}) | IGNORED


class RequestError(EdgegenError, ValueError):
    """A request field is missing, of the wrong type or out of range (HTTP 400, 404 for ``model``)."""

    def __init__(self, field: str, expected: str, got: Any):
        self.field, self.expected, self.got = field, expected, got
        super().__init__(f"{field}: expected {expected}, got {got!r}")


@dataclass(frozen=True)
class ModelCard:
    """What the service needs to know about one artifact, read from its manifest.

    Attributes:
        name: the model id clients send as ``model``.
        family: ``stable-diffusion``, ``unet``, ``generator`` or ``vae-decoder``.
        height, width: the artifact's native image size in pixels.
        resizable: whether other sizes work (multiples of ``scale_factor``: SD, VAE decoders).
        noise_shape: per-image initial noise / latent shape at the native size, (C, h, w) or (D,).
        classes: class names of a class-conditional U-Net, else None.
    """

    name: str
    path: str
    family: str
    height: int
    width: int
    resizable: bool
    scale_factor: int
    noise_shape: tuple[int, ...]
    classes: tuple[str, ...] | None = None

    @classmethod
    def from_artifact(cls, name: str, path: str | Path) -> "ModelCard":
        """Read an artifact's typed manifest (no engine is loaded). Raises ArtifactError."""
        from ..artifact import Artifact
        from ..types import Family

        artifact = Artifact.load(path)
        spec = artifact.spec
        height, width = spec.image.height, spec.image.width
        resizable = spec.family in (Family.stable_diffusion, Family.vae_decoder)
        factor = spec.scale_factor if resizable else 1
        if resizable:
            shape = (int(spec.latent.channels), height // factor, width // factor)
        else:
            shape = tuple(int(v) for v in spec.latent.shape)
        classes = tuple(spec.conditioning.class_names) if spec.conditioning else None
        return cls(name, str(artifact.path), spec.family.value, height, width, resizable, factor, shape, classes)

    @property
    def diffusion(self) -> bool:
        return self.family in ("stable-diffusion", "unet")

    def image_noise_shape(self, height: int, width: int) -> tuple[int, ...]:
        """Per-image noise shape at ``height`` x ``width`` pixels."""
        if not self.resizable:
            return self.noise_shape
        return (self.noise_shape[0], height // self.scale_factor, width // self.scale_factor)

    def to_openai(self) -> dict[str, Any]:
        """The ``GET /v1/models`` entry."""
        return {"id": self.name, "object": "model", "created": 0, "owned_by": "edgegen", "family": self.family,
                "size": f"{self.width}x{self.height}", "resizable": self.resizable,
                **({"classes": list(self.classes)} if self.classes else {})}


@dataclass(frozen=True)
class ImageRequest:
    """One checked request: ``n`` images of ``height`` x ``width`` from model ``model``.

    ``class_labels`` holds one label per image for class-conditional U-Nets (resolved here, so a
    request's labels never depend on what it is batched with), else None.
    """

    model: str
    n: int = 1
    height: int = 0
    width: int = 0
    prompt: str | None = None
    negative_prompt: str | None = None
    seed: int = 0
    steps: int = 50
    sampler: str | None = None
    sigmas: str | None = None
    guidance_scale: float = 7.5
    class_labels: tuple[int, ...] | None = None
    batchable: bool = True

    def batch_key(self) -> tuple | None:
        """Requests with equal keys may share one engine batch; None: run alone (``batchable`` is
        False for an ancestral sampler, or the artifact's default sampler, which may be one)."""
        if not self.batchable:
            return None
        return (self.height, self.width, self.steps, self.sampler, self.sigmas, self.guidance_scale)


def parse_request(body: Any, cards: Mapping[str, ModelCard], *, max_images: int = MAX_IMAGES) -> ImageRequest:
    """Check a JSON body against the model it names.

    Raises:
        RequestError: naming the first bad field (unknown fields too).
    """
    if not isinstance(body, dict):
        raise RequestError("body", "a JSON object", type(body).__name__)
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise RequestError(unknown[0], f"one of the fields {sorted(FIELDS - IGNORED)}", "an unknown field")
    model = body.get("model")
    if model not in cards:
        raise RequestError("model", f"one of {sorted(cards)}", model)
    card = cards[model]
    fmt = body.get("response_format") or "b64_json"
    if fmt != "b64_json":
        raise RequestError("response_format", "'b64_json'", fmt)
    width, height = _size(body.get("size"), card)
    n = _int(body, "n", 1, 1, max_images)
    prompt = _str(body, "prompt")
    negative = _str(body, "negative_prompt")
    fields = dict(model=model, n=n, height=height, width=width, seed=_int(body, "seed", 0, 0, 2**63 - 1))
    if card.diffusion:
        sampler, sigmas = _choice(body, "sampler", SAMPLERS), _choice(body, "sigmas", SIGMAS)
        fields.update(steps=_int(body, "steps", 50, 1, MAX_STEPS), sampler=sampler, sigmas=sigmas,
                      batchable=sampler is not None and sampler not in ANCESTRAL,
                      guidance_scale=_float(body, "guidance_scale", 7.5))
    else:
        _absent(body, card, "steps", "sampler", "sigmas", "guidance_scale")
    if card.family == "stable-diffusion":
        return ImageRequest(prompt=prompt or "", negative_prompt=negative, **fields)
    _absent(body, card, "negative_prompt")
    if card.classes:
        return ImageRequest(class_labels=_labels(body, card, prompt, n), **fields)
    _absent(body, card, "class_label")
    return ImageRequest(**fields)


def _labels(body: Mapping[str, Any], card: ModelCard, prompt: str | None, n: int) -> tuple[int, ...]:
    """One class label per image: ``class_label``, else a prompt naming a class, else a cycle through the classes."""
    classes = card.classes or ()
    if body.get("class_label") is not None:
        label = _int(body, "class_label", 0, 0, len(classes) - 1)
    elif prompt and prompt.strip():
        if prompt.strip() not in classes:
            raise RequestError("prompt", f"a class name of model '{card.name}' {list(classes)} (or class_label)", prompt)
        label = classes.index(prompt.strip())
    else:
        return tuple(i % len(classes) for i in range(n))
    return (label,) * n


def _size(value: Any, card: ModelCard) -> tuple[int, int]:
    if value is None:
        return card.width, card.height
    match = re.fullmatch(r"(\d+)x(\d+)", value) if isinstance(value, str) else None
    if not match:
        raise RequestError("size", "'WIDTHxHEIGHT' such as '512x512'", value)
    width, height = int(match[1]), int(match[2])
    native = f"{card.width}x{card.height}"
    if not card.resizable and (width, height) != (card.width, card.height):
        raise RequestError("size", f"'{native}' (model '{card.name}' has a fixed size)", value)
    f = card.scale_factor
    if width % f or height % f or not (f <= width <= MAX_SIDE and f <= height <= MAX_SIDE):
        raise RequestError("size", f"multiples of {f} from {f} to {MAX_SIDE}", value)
    return width, height


def _int(body: Mapping[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RequestError(field, f"an integer from {lo} to {hi}", value)
    return value


def _float(body: Mapping[str, Any], field: str, default: float) -> float:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise RequestError(field, "a finite number >= 0", value)
    return float(value)


def _choice(body: Mapping[str, Any], field: str, allowed: tuple[str, ...]) -> str | None:
    value = body.get(field)
    if value is not None and value not in allowed:
        raise RequestError(field, f"one of {list(allowed)}", value)
    return value


def _str(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise RequestError(field, "a string", value)
    return value


def _absent(body: Mapping[str, Any], card: ModelCard, *fields: str) -> None:
    for field in fields:
        if body.get(field) is not None:
            raise RequestError(field, f"nothing (model '{card.name}' is a {card.family} without it)", body[field])
