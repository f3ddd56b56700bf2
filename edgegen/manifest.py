"""The typed manifest: ``edgegen.json`` parsed and validated once, into frozen dataclasses.

:func:`parse_manifest` is the only reader of the raw JSON. It checks types (an int is an int:
``1.0`` and ``true`` are not), ranges (positive sizes, ``lo < hi``, bounded allocations), the
library enums (:mod:`edgegen.types`), relative paths that stay inside the artifact, and what each
family needs (``docs/artifact.md`` lists every key; a test holds the two together). Any problem
raises one :class:`~edgegen.errors.ManifestError` naming the key path, the expected and the
received value. It touches no file: :mod:`edgegen.artifact` checks the files themselves.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

from .errors import ArtifactError, EdgegenError, ManifestError
from .runtimes.base import TensorSpec
from .types import Backend, Family, Precision

if TYPE_CHECKING:
    from .schedules import NoiseSchedule

SCHEMA_VERSION = 1
# One image's worth of any tensor the manifest implies (latents, image, a graph input with its
# dynamic dims at 1) may hold at most this many elements: 4 GiB of float32, far above SD-XL at
# 1024 px (3 M) and far below what a corrupted size asks for (a 3.6 TiB tensor is 1e12).
MAX_TENSOR_ELEMENTS = 1 << 30
MAX_DIM = (1 << 31) - 1
MAX_TOKENS = 1 << 16
MAX_CLASSES = 1 << 20
MAX_TRAIN_TIMESTEPS = 100_000
DTYPES = ("float32", "float16", "float64", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
FORMATS = ("onnx", "openvino")  # openvino: IR .xml + .bin, from `edgegen import`
COMPONENTS = {Family.stable_diffusion: ("text_encoder", "unet", "vae_decoder", "vae_encoder", "vae_decoder_tiny"), Family.unet: ("unet",),
              Family.generator: ("generator",), Family.vae_decoder: ("vae_decoder",)}
_MISSING = ManifestError.MISSING
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class Variant:
    """Another stored file of a component (``variants[precision][backend]``), e.g. INT8 for OpenVINO,
    or the FP32 component as OpenVINO IR with FP16-stored weights (``weights`` "fp16")."""

    file: str
    precision: Precision
    backend: Backend
    quantizer: str | None = None
    excluded_layers: tuple[str, ...] = ()
    calibration: Mapping[str, Any] | None = None
    speed: Mapping[str, Any] | None = None
    weights: str | None = None
    parity: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Component:
    """One graph of the artifact (``components.<name>``)."""

    name: str
    file: str
    format: str
    precision: Precision
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parity: Mapping[str, Any] | None = None
    source_sha256: str | Mapping[str, str] | None = None
    variants: Mapping[Precision, Mapping[Backend, Variant]] = field(default_factory=lambda: MappingProxyType({}))

    def input(self, name: str) -> TensorSpec | None:
        """The graph input called ``name``, or None."""
        return next((t for t in self.inputs if t.name == name), None)

    def variant(self, precision: Precision | str | None = None, backend: Backend | str | None = None
                ) -> "Component | Variant":
        """The stored file for ``precision`` on ``backend``: when ``precision`` is None or its own,
        this component itself, or on OpenVINO its own precision's IR variant where the artifact has
        one (``variants[fp32][openvino]``, loaded without the ONNX parse); else
        ``variants[precision][backend]``. OpenVINO also runs ONNX Runtime's QDQ variant; ``backend``
        None takes any. Raises ArtifactError naming the variants there are.
        """
        if precision is None or precision == self.precision:
            if backend is not None and _value(backend) == Backend.openvino.value:
                return self.variants.get(self.precision, {}).get(Backend.openvino, self)
            return self
        try:  # enum keys: look up by member, not by a string that happens to hash alike
            precision, backend = Precision(precision), (Backend(backend) if backend else None)
        except ValueError:
            raise ArtifactError(f"component '{self.name}': expected a precision in {[p.value for p in Precision]} "
                                f"and a backend in {[b.value for b in Backend]}, got {precision!r}, {backend!r}") from None
        by_backend = self.variants.get(precision, {})
        for candidate in ([backend] if backend else []) + (["onnxruntime"] if backend == "openvino" else []):
            if candidate in by_backend:
                return by_backend[candidate]
        if backend is None and by_backend:
            return next(iter(by_backend.values()))
        have = [self.precision.value] + [f"{p.value}/{b.value}" for p, v in self.variants.items() for b in v]
        raise ArtifactError(f"component '{self.name}' has no '{_value(precision)}' variant for backend "
                            f"'{_value(backend)}' (has {have})")

    def has_variant(self, precision: Precision | str, backend: Backend | str | None = None) -> bool:
        """Whether :meth:`variant` finds a file for ``precision`` on ``backend``."""
        try:
            self.variant(precision, backend)
            return True
        except ArtifactError:
            return False


@dataclass(frozen=True)
class Latent:
    """What the model's input noise looks like (``latent``); which fields are set depends on the family."""

    shape: tuple[int, ...] | None = None
    channels: int | None = None
    scale_factor: int | None = None
    scaling_factor: float = 1.0


@dataclass(frozen=True)
class Image:
    """The produced image (``image``): default size in pixels and the model's output value range."""

    height: int
    width: int
    output_range: tuple[float, float]
    channels: int | None = None


@dataclass(frozen=True)
class Tokenizer:
    """Stable Diffusion's CLIP tokenizer (``tokenizer``)."""

    file: str
    max_length: int
    pad_id: int


@dataclass(frozen=True)
class Conditioning:
    """Class conditioning of a U-Net (``conditioning``)."""

    type: str
    num_classes: int
    class_names: tuple[str, ...]
    null_class: int | None = None
    guidance_interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class TinyDecoder:
    """The second, tiny VAE decoder of a Stable Diffusion artifact (``tiny_decoder``).

    Its graph (component ``vae_decoder_tiny``) takes the same ``latents`` as ``vae_decoder``
    (x0 / ``latent.scaling_factor``) and multiplies them by ``input_scale`` inside the graph, so
    that it decodes what diffusers' ``AutoencoderTiny.decode(x0 / tiny scaling_factor)`` decodes.
    """

    source: str
    latent_channels: int
    scaling_factor: float
    input_scale: float


@dataclass(frozen=True)
class Preview:
    """Linear latent -> RGB projection for cheap previews (``preview``): ``rgb = x0 @ matrix + bias``
    per latent pixel, x0 the U-Net's latents, rgb in ``image.output_range``; fitted by least squares."""

    matrix: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    psnr_db: float


@dataclass(frozen=True)
class GuidanceEmbedding:
    """Guidance as a U-Net input (``guidance_embedding``): an LCM-distilled U-Net (Luo et al. 2023)
    takes the sinusoidal w-embedding of ``guidance_scale - 1`` (diffusers'
    ``LatentConsistencyModelPipeline.get_guidance_scale_embedding``) as ``input``, (batch, dim)
    float32, and runs once per step: no unconditional branch, no CFG batch."""

    type: str
    input: str
    dim: int


@dataclass(frozen=True)
class FileRecord:
    """A file of the artifact as published (``files.<path>``)."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """``edgegen.json``, validated. Build it with :func:`parse_manifest`."""

    schema_version: int
    family: Family
    components: Mapping[str, Component]
    latent: Latent
    image: Image
    scheduler: Mapping[str, Any] | None = None
    tokenizer: Tokenizer | None = None
    conditioning: Conditioning | None = None
    guidance_embedding: GuidanceEmbedding | None = None
    files: Mapping[str, FileRecord] = field(default_factory=lambda: MappingProxyType({}))
    edgegen_version: str = ""
    created: str = ""
    source: Mapping[str, Any] | None = None
    quantization: Mapping[str, Any] | None = None
    tiny_decoder: TinyDecoder | None = None
    preview: Preview | None = None
    _raw: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)

    @property
    def guided(self) -> bool:
        """Whether sampling uses classifier-free guidance (text-to-image, or class-conditional U-Nets):
        the U-Net then sees two rows per image. Not with a ``guidance_embedding`` (LCM): one row."""
        if self.guidance_embedding is not None:
            return False
        return self.family is Family.stable_diffusion or self.conditioning is not None

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent pixel: ``latent.scale_factor`` (SD, VAE decoders), else 1."""
        return self.latent.scale_factor or 1

    @property
    def scheduler_class(self) -> str | None:
        """The diffusers scheduler class the config was saved from (``_class_name``), if any."""
        name = (self.scheduler or {}).get("_class_name")
        return name if isinstance(name, str) else None

    @functools.cached_property
    def schedule(self) -> "NoiseSchedule":
        """The noise schedule of ``scheduler`` (validated when parsed). Diffusion families only."""
        from .schedules import NoiseSchedule

        if self.scheduler is None:
            raise ManifestError("scheduler", f"a scheduler config (a {self.family.value} artifact has none)", _MISSING)
        return NoiseSchedule.from_config(self.scheduler)

    def component(self, name: str) -> Component:
        """The component ``name``. Raises ArtifactError naming the components there are."""
        if name not in self.components:
            raise ManifestError(f"components.{name}", f"a component '{name}' (this artifact has "
                                f"{sorted(self.components)})", _MISSING)
        return self.components[name]

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON this manifest was parsed from (for writers deriving a new artifact)."""
        import copy

        return copy.deepcopy(dict(self._raw))


def _value(x) -> str | None:
    return getattr(x, "value", x)


def parse_manifest(data: Any, where: str = "edgegen.json") -> Manifest:
    """Validate the decoded JSON of ``edgegen.json`` and return it typed.

    Args:
        data: what ``json.loads`` gave.
        where: how messages name the file (e.g. ``artifact 'ART': edgegen.json``).
    Raises:
        ManifestError: (an ArtifactError) naming the first offending key path, the expected and the
            received value.
    """
    try:
        return _manifest(data)
    except ManifestError as exc:
        raise ManifestError(exc.key, exc.expected, exc.received, where) from None


def _manifest(data: Any) -> Manifest:
    top = _obj(data, "(top level)")
    version = _get(top, "schema_version", "")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ManifestError("schema_version", f"the int {SCHEMA_VERSION}", version)
    family = _enum(Family, _get(top, "family", ""), "family")
    components = _obj(_get(top, "components", ""), "components")
    comps = {name: _component(c, f"components.{name}", name) for name, c in components.items()}
    manifest = Manifest(
        schema_version=version, family=family, components=MappingProxyType(comps),
        latent=_latent(_get(top, "latent", ""), "latent"), image=_image(_get(top, "image", ""), "image"),
        scheduler=_opt(top, "scheduler", _frozen_obj), tokenizer=_opt(top, "tokenizer", _tokenizer),
        conditioning=_opt(top, "conditioning", _conditioning),
        guidance_embedding=_opt(top, "guidance_embedding", _guidance_embedding),
        files=_opt(top, "files", _files) or MappingProxyType({}),
        edgegen_version=_opt(top, "edgegen_version", _text) or "", created=_opt(top, "created", _text) or "",
        source=_opt(top, "source", _frozen_obj), quantization=_opt(top, "quantization", _frozen_obj),
        tiny_decoder=_opt(top, "tiny_decoder", _tiny_decoder), preview=_opt(top, "preview", _preview),
        _raw=MappingProxyType(top))
    _check_family(manifest, top)
    return manifest


# --- value readers: each takes the value and its key path, returns it typed or raises ---------------

def _get(obj: Mapping, key: str, at: str) -> Any:
    """``obj[key]``; ManifestError (missing) when absent."""
    path = f"{at}.{key}" if at else key
    if key not in obj:
        raise ManifestError(path, "a value (required key)", _MISSING)
    return obj[key]


def _opt(obj: Mapping, key: str, read, *args):
    """``read(obj[key], key)`` or None when the key is absent or null."""
    value = obj.get(key)
    return None if value is None else read(value, key, *args)


def _obj(value: Any, key: str) -> dict:
    if not isinstance(value, dict):
        raise ManifestError(key, "a JSON object", value)
    return value


def _frozen_obj(value: Any, key: str) -> Mapping:
    return MappingProxyType(_obj(value, key))


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(key, "a string", value)
    return value


def _int(value: Any, key: str, lo: int = 1, hi: int = MAX_DIM) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise ManifestError(key, f"an int in [{lo}, {hi}]", value)
    return value


def _num(value: Any, key: str, *, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):
        raise ManifestError(key, "a positive finite number" if positive else "a finite number", value)
    return float(value)


def _list(value: Any, key: str, lengths: tuple[int, int] = (0, 1 << 20)) -> list:
    if not isinstance(value, list) or not lengths[0] <= len(value) <= lengths[1]:
        raise ManifestError(key, f"a list of {lengths[0]} to {lengths[1]} items", value)
    return value


def _enum(enum, value: Any, key: str):
    try:
        return enum(value)
    except (ValueError, TypeError):
        raise ManifestError(key, "one of " + ", ".join(m.value for m in enum), value) from None


def _relpath(value: Any, key: str) -> str:
    """A relative POSIX path below the artifact: not absolute, no ``..``, no backslash or NUL."""
    text = _text(value, key)
    parts = PurePosixPath(text).parts
    if (not text or len(text) > 4096 or text.startswith("/") or "\\" in text or "\0" in text or ".." in parts
            or not parts or re.match(r"^[A-Za-z]:", text)):
        raise ManifestError(key, "a relative path inside the artifact (no '..', not absolute)", value)
    return text


def _elements(shape, key: str) -> None:
    """Refuse a shape whose one-image size passes MAX_TENSOR_ELEMENTS (named dims count as 1)."""
    if math.prod(d for d in shape if isinstance(d, int)) > MAX_TENSOR_ELEMENTS:
        raise ManifestError(key, f"at most {MAX_TENSOR_ELEMENTS} elements per image", list(shape))


# --- sections ---------------------------------------------------------------------------------------

def _tensor(value: Any, key: str) -> TensorSpec:
    entry = _obj(value, key)
    name = _text(_get(entry, "name", key), f"{key}.name")
    dims = _list(_get(entry, "shape", key), f"{key}.shape", (0, 8))
    for i, d in enumerate(dims):
        if not (type(d) is int and 1 <= d <= MAX_DIM) and not (isinstance(d, str) and _DIM_NAME.fullmatch(d)):
            raise ManifestError(f"{key}.shape[{i}]", f"a size in [1, {MAX_DIM}] or a dim name", d)
    _elements(dims, f"{key}.shape")
    dtype = _get(entry, "dtype", key)
    if dtype not in DTYPES:
        raise ManifestError(f"{key}.dtype", "one of " + ", ".join(DTYPES), dtype)
    return TensorSpec(name, tuple(dims), dtype)


def _tensors(value: Any, key: str) -> tuple[TensorSpec, ...]:
    specs = tuple(_tensor(v, f"{key}[{i}]") for i, v in enumerate(_list(value, key, (1, 64))))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ManifestError(key, "distinct tensor names", names)
    return specs


def _component(value: Any, key: str, name: str) -> Component:
    entry = _obj(value, key)
    file_format = _get(entry, "format", key)
    if file_format not in FORMATS:
        raise ManifestError(f"{key}.format", "one of " + ", ".join(FORMATS), file_format)
    digest = entry.get("source_sha256")
    if digest is not None and not isinstance(digest, (str, dict)):
        raise ManifestError(f"{key}.source_sha256", "a string or an object", digest)
    return Component(
        name=name, file=_relpath(_get(entry, "file", key), f"{key}.file"), format=file_format,
        precision=_enum(Precision, entry.get("precision", "fp32"), f"{key}.precision"),
        inputs=_tensors(_get(entry, "inputs", key), f"{key}.inputs"),
        outputs=_tensors(_get(entry, "outputs", key), f"{key}.outputs"),
        parity=_opt(entry, "parity", lambda v, k: _frozen_obj(v, f"{key}.{k}")),
        source_sha256=MappingProxyType(digest) if isinstance(digest, dict) else digest,
        variants=_variants(entry.get("variants") or {}, f"{key}.variants"))


def _variants(value: Any, key: str) -> Mapping[Precision, Mapping[Backend, Variant]]:
    out = {}
    for precision, by_backend in _obj(value, key).items():
        p = _enum(Precision, precision, f"{key} key")
        out[p] = MappingProxyType({_enum(Backend, b, f"{key}.{precision} key"): _variant(v, f"{key}.{precision}.{b}", p, b)
                                   for b, v in _obj(by_backend, f"{key}.{precision}").items()})
    return MappingProxyType(out)


def _variant(value: Any, key: str, precision: Precision, backend: str) -> Variant:
    entry = _obj(value, key)
    if entry.get("precision", precision.value) != precision.value:
        raise ManifestError(f"{key}.precision", f"'{precision.value}' (its key)", entry["precision"])
    if entry.get("backend", backend) != backend:
        raise ManifestError(f"{key}.backend", f"'{backend}' (its key)", entry["backend"])
    excluded = _list(entry.get("excluded_layers") or [], f"{key}.excluded_layers")
    return Variant(file=_relpath(_get(entry, "file", key), f"{key}.file"), precision=precision,
                   backend=Backend(backend), quantizer=_opt(entry, "quantizer", lambda v, k: _text(v, f"{key}.{k}")),
                   excluded_layers=tuple(_text(v, f"{key}.excluded_layers[{i}]") for i, v in enumerate(excluded)),
                   calibration=_opt(entry, "calibration", lambda v, k: _frozen_obj(v, f"{key}.{k}")),
                   speed=_opt(entry, "speed", lambda v, k: _frozen_obj(v, f"{key}.{k}")),
                   weights=_opt(entry, "weights", lambda v, k: _text(v, f"{key}.{k}")),
                   parity=_opt(entry, "parity", lambda v, k: _frozen_obj(v, f"{key}.{k}")))


def _latent(value: Any, key: str) -> Latent:
    entry = _obj(value, key)
    shape = None
    if entry.get("shape") is not None:
        dims = _list(entry["shape"], f"{key}.shape", (1, 4))
        shape = tuple(_int(d, f"{key}.shape[{i}]") for i, d in enumerate(dims))
        _elements(shape, f"{key}.shape")
    opt_int = lambda name: _opt(entry, name, lambda v, k: _int(v, f"{key}.{k}"))  # noqa: E731
    scaling = _opt(entry, "scaling_factor", lambda v, k: _num(v, f"{key}.{k}", positive=True))
    return Latent(shape=shape, channels=opt_int("channels"), scale_factor=opt_int("scale_factor"),
                  scaling_factor=1.0 if scaling is None else scaling)


def _image(value: Any, key: str) -> Image:
    entry = _obj(value, key)
    rng = _list(_get(entry, "output_range", key), f"{key}.output_range", (2, 2))
    lo, hi = (_num(v, f"{key}.output_range[{i}]") for i, v in enumerate(rng))
    if not lo < hi:
        raise ManifestError(f"{key}.output_range", "[lo, hi] with lo < hi", rng)
    image = Image(height=_int(_get(entry, "height", key), f"{key}.height"),
                  width=_int(_get(entry, "width", key), f"{key}.width"), output_range=(lo, hi),
                  channels=_opt(entry, "channels", lambda v, k: _int(v, f"{key}.{k}", 1, 64)))
    _elements((image.channels or 1, image.height, image.width), f"{key} (channels x height x width)")
    return image


def _tokenizer(value: Any, key: str) -> Tokenizer:
    entry = _obj(value, key)
    return Tokenizer(file=_relpath(_get(entry, "file", key), f"{key}.file"),
                     max_length=_int(_get(entry, "max_length", key), f"{key}.max_length", 1, MAX_TOKENS),
                     pad_id=_int(_get(entry, "pad_id", key), f"{key}.pad_id", 0))


def _conditioning(value: Any, key: str) -> Conditioning:
    entry = _obj(value, key)
    kind = _get(entry, "type", key)
    if kind != "class":
        raise ManifestError(f"{key}.type", "'class'", kind)
    n = _int(_get(entry, "num_classes", key), f"{key}.num_classes", 1, MAX_CLASSES)
    names = entry.get("class_names")
    names = [str(i) for i in range(n)] if names is None else _list(names, f"{key}.class_names", (n, n))
    null = _opt(entry, "null_class", lambda v, k: _int(v, f"{key}.{k}", 0, n))
    interval = None
    if entry.get("guidance_interval") is not None:
        pair = _list(entry["guidance_interval"], f"{key}.guidance_interval", (2, 2))
        lo, hi = (v if v == math.inf else _num(v, f"{key}.guidance_interval[{i}]") for i, v in enumerate(pair))
        if not 0 <= lo < hi:
            raise ManifestError(f"{key}.guidance_interval", "[sigma_lo, sigma_hi] with 0 <= lo < hi", pair)
        interval = (float(lo), float(hi))
    return Conditioning(type=kind, num_classes=n, null_class=null, guidance_interval=interval,
                        class_names=tuple(_text(v, f"{key}.class_names[{i}]") for i, v in enumerate(names)))


def _tiny_decoder(value: Any, key: str) -> TinyDecoder:
    entry = _obj(value, key)
    return TinyDecoder(source=_text(_get(entry, "source", key), f"{key}.source"),
                       latent_channels=_int(_get(entry, "latent_channels", key), f"{key}.latent_channels"),
                       scaling_factor=_num(_get(entry, "scaling_factor", key), f"{key}.scaling_factor", positive=True),
                       input_scale=_num(_get(entry, "input_scale", key), f"{key}.input_scale", positive=True))


def _preview(value: Any, key: str) -> Preview:
    entry = _obj(value, key)
    rows = _list(_get(entry, "matrix", key), f"{key}.matrix", (1, 64))
    matrix = tuple(tuple(_num(v, f"{key}.matrix[{i}][{j}]") for j, v in enumerate(_list(row, f"{key}.matrix[{i}]", (3, 3))))
                   for i, row in enumerate(rows))
    bias = tuple(_num(v, f"{key}.bias[{i}]") for i, v in enumerate(_list(_get(entry, "bias", key), f"{key}.bias", (3, 3))))
    return Preview(matrix=matrix, bias=bias, psnr_db=_num(_get(entry, "psnr_db", key), f"{key}.psnr_db"))


def _guidance_embedding(value: Any, key: str) -> GuidanceEmbedding:
    entry = _obj(value, key)
    kind = _get(entry, "type", key)
    if kind != "lcm":
        raise ManifestError(f"{key}.type", "'lcm'", kind)
    return GuidanceEmbedding(type=kind, input=_text(_get(entry, "input", key), f"{key}.input"),
                             dim=_int(_get(entry, "dim", key), f"{key}.dim", 4, 1 << 16))


def _files(value: Any, key: str) -> Mapping[str, FileRecord]:
    out = {}
    for path, record in _obj(value, key).items():
        at = f"{key}.{path}"
        _relpath(path, f"{key} key")
        entry = _obj(record, at)
        digest = _get(entry, "sha256", at)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise ManifestError(f"{at}.sha256", "64 lowercase hex digits", digest)
        out[path] = FileRecord(sha256=digest, size=_int(_get(entry, "size", at), f"{at}.size", 0, 1 << 50))
    return MappingProxyType(out)


# --- what each family needs -------------------------------------------------------------------------

def _check_family(m: Manifest, top: Mapping) -> None:
    """Components, latent, scheduler, tokenizer and conditioning as the family needs them."""
    allowed = COMPONENTS[m.family]
    for name in m.components:
        if name not in allowed:
            raise ManifestError(f"components.{name}", f"components of a {m.family.value} artifact: "
                                + ", ".join(allowed), name)
    if not m.components or (m.family is not Family.stable_diffusion and allowed[0] not in m.components):
        raise ManifestError("components", f"{' or '.join(allowed)} for a {m.family.value} artifact", sorted(m.components))
    if m.family in (Family.unet, Family.generator):
        if m.latent.shape is None:
            raise ManifestError("latent.shape", "the shape of the model's input noise (without batch)", _MISSING)
        if m.family is Family.unet and len(m.latent.shape) != 3:
            raise ManifestError("latent.shape", "[C, H, W] of the U-Net's sample", list(m.latent.shape))
    else:
        _check_decoded_latent(m)
    _check_extras(m, top)
    if m.family in (Family.stable_diffusion, Family.unet):
        _check_scheduler(_get(top, "scheduler", ""))
    if m.family is Family.stable_diffusion and "text_encoder" in m.components and m.tokenizer is None:
        raise ManifestError("tokenizer", "{file, max_length, pad_id} (the artifact has a text encoder)",
                            top.get("tokenizer", _MISSING))
    if m.family is Family.unet:
        class_input = m.components["unet"].input("class_labels") is not None
        if class_input and m.conditioning is None:
            raise ManifestError("conditioning", "{type: class, num_classes, ...} (the U-Net has a class_labels "
                                "input)", top.get("conditioning", _MISSING))
        if m.conditioning is not None and not class_input:
            raise ManifestError("conditioning", "null or absent (the U-Net has no class_labels input)",
                                dict(top["conditioning"]))
    _check_guidance_embedding(m, top)


def _check_guidance_embedding(m: Manifest, top: Mapping) -> None:
    """``guidance_embedding`` exactly when the U-Net has a ``timestep_cond`` input, of shape (batch, dim)."""
    g, unet = m.guidance_embedding, m.components.get("unet")
    if g is None:
        if unet is not None and unet.input("timestep_cond") is not None:
            raise ManifestError("guidance_embedding", "{type: lcm, input: timestep_cond, dim} (the U-Net has a "
                                "timestep_cond input)", top.get("guidance_embedding", _MISSING))
        return
    tensor = unet.input(g.input) if unet is not None else None
    if tensor is None:
        raise ManifestError("guidance_embedding.input", "an input of the U-Net", g.input)
    if len(tensor.shape) != 2 or tensor.shape[1] != g.dim or tensor.dtype != "float32":
        raise ManifestError("guidance_embedding.dim", f"the size of U-Net input '{g.input}' (batch, dim) float32, "
                            f"which is {tensor.dtype} {list(tensor.shape)}", g.dim)


def _check_extras(m: Manifest, top: Mapping) -> None:
    """``tiny_decoder`` exactly with a ``vae_decoder_tiny`` component; latent channels agree with ``preview``."""
    has_tiny = "vae_decoder_tiny" in m.components
    if has_tiny and m.tiny_decoder is None:
        raise ManifestError("tiny_decoder", "{source, latent_channels, scaling_factor, input_scale} (the artifact "
                            "has a vae_decoder_tiny component)", top.get("tiny_decoder", _MISSING))
    if m.tiny_decoder is not None and not has_tiny:
        raise ManifestError("tiny_decoder", "null or absent (the artifact has no vae_decoder_tiny component)",
                            dict(top["tiny_decoder"]))
    if m.tiny_decoder is not None and m.tiny_decoder.latent_channels != m.latent.channels:
        raise ManifestError("tiny_decoder.latent_channels", f"latent.channels {m.latent.channels}",
                            m.tiny_decoder.latent_channels)
    if m.preview is not None and len(m.preview.matrix) != (m.latent.channels or len(m.preview.matrix)):
        raise ManifestError("preview.matrix", f"{m.latent.channels} rows (latent.channels) of 3", len(m.preview.matrix))


def _check_decoded_latent(m: Manifest) -> None:
    """SD and VAE decoders: latent channels and scale factor, image size a multiple of it."""
    for name in ("channels", "scale_factor"):
        if getattr(m.latent, name) is None:
            raise ManifestError(f"latent.{name}", "an int in [1, 2147483647]", _MISSING)
    f = m.latent.scale_factor
    for name in ("height", "width"):
        if getattr(m.image, name) % f:
            raise ManifestError(f"image.{name}", f"a multiple of latent.scale_factor {f}", getattr(m.image, name))
    _elements((m.latent.channels, m.image.height // f, m.image.width // f), "latent (channels x image size / scale_factor)")


def _check_scheduler(value: Any) -> None:
    """A diffusers scheduler config edgegen can sample: bounded, and a schedule with alphas_cumprod in (0, 1]."""
    import numpy as np

    from .schedules import NoiseSchedule

    config = _obj(value, "scheduler")
    if "num_train_timesteps" in config:
        _int(config["num_train_timesteps"], "scheduler.num_train_timesteps", 1, MAX_TRAIN_TIMESTEPS)
    for name in ("beta_start", "beta_end", "clip_sample_range"):
        if config.get(name) is not None:
            _num(config[name], f"scheduler.{name}")
    if config.get("steps_offset") is not None:
        _int(config["steps_offset"], "scheduler.steps_offset", 0, MAX_TRAIN_TIMESTEPS)
    if config.get("trained_betas") is not None:
        _list(config["trained_betas"], "scheduler.trained_betas", (1, MAX_TRAIN_TIMESTEPS))
    try:
        with np.errstate(all="ignore"):
            schedule = NoiseSchedule.from_config(config)
            alphas = schedule.alphas_cumprod
            ok = bool(np.isfinite(alphas).all() and (alphas > 0).all() and (alphas <= 1).all())
    except (EdgegenError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise ManifestError("scheduler", "a diffusers scheduler config edgegen can sample", str(exc)) from None
    if not ok:
        raise ManifestError("scheduler", "betas in (0, 1) (alphas_cumprod in (0, 1])",
                            {k: config.get(k) for k in ("beta_start", "beta_end", "beta_schedule")})
