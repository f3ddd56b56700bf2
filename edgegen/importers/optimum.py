"""Import optimum's Stable Diffusion exports as edgegen artifacts, without torch.

Reads what ``optimum-cli export onnx --task text-to-image`` and ``optimum-cli export openvino``
(FP32, or INT8 weight-compressed with ``--weight-format int8``) write::

    DIR/model_index.json
    DIR/scheduler/scheduler_config.json
    DIR/tokenizer/       tokenizer.json, or CLIP's vocab.json + merges.txt; tokenizer_config.json
    DIR/text_encoder/    model.onnx, or openvino_model.xml + openvino_model.bin; config.json
    DIR/unet/            the same
    DIR/vae_decoder/     the same (vae_encoder/ and OpenVINO tokenizer models are not imported:
                         optimum's encoder outputs ``latent_parameters``, mean and logvar in one
                         tensor, where edgegen's has ``latent_mean`` / ``latent_std``; imported
                         artifacts run text-to-image, img2img needs ``edgegen export --model sd``)

and writes a ``stable-diffusion`` artifact (``docs/artifact.md``). optimum's graphs differ from
edgegen's graph conventions in names and in one shape; the import adapts the graphs and leaves
the weights byte for byte as optimum wrote them (OpenVINO ``.bin`` and ONNX external data files
are copied unchanged; ONNX initializers keep their bytes):

- U-Net output ``out_sample`` -> ``noise_pred``; VAE decoder ``latent_sample`` -> ``latents`` and
  ``sample`` -> ``image``.
- optimum's U-Net takes one timestep for the whole batch (ONNX: a scalar; OpenVINO INT8: shape
  [1]); edgegen feeds ``timestep`` (batch,) with equal values, so the adapted graph gathers its
  first element into the original input's shape.

A component that needs neither (the text encoder) is copied file for file. The import ends in a
parity gate per component: the imported file through edgegen's engine against optimum's file run
directly (ONNX Runtime, or OpenVINO with the f32 precision hint) on the same seeded input.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..artifact import atomic_artifact
from ..checksums import sha256_file
from ..errors import ImportSourceError
from ..gates import parity_gate
from ..progress import ProgressCallback, silent
from ..runtimes import load_engine
from ..runtimes.base import TensorSpec

SD_COMPONENTS = ("text_encoder", "unet", "vae_decoder")
_MODEL_FILES = {"onnx": ("model.onnx",), "openvino": ("openvino_model.xml", "openvino_model.bin")}
_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino"}
_SUFFIX = {"onnx": ".onnx", "openvino": ".xml"}
# optimum's graph tensor names -> edgegen's, per component.
_RENAMES = {"text_encoder": {}, "unet": {"out_sample": "noise_pred"},
            "vae_decoder": {"latent_sample": "latents", "sample": "image"}}
# What edgegen's pipeline feeds and reads: name -> (dtype, edgegen's names for the dims).
_CONVENTIONS = {
    "text_encoder": ({"input_ids": ("int64", ("batch", "sequence"))},
                     {"last_hidden_state": ("float32", ("batch", "sequence", "hidden"))}),
    "unet": ({"sample": ("float32", ("batch", "latent_channels", "latent_height", "latent_width")),
              "timestep": (None, ("batch",)),
              "encoder_hidden_states": ("float32", ("batch", "sequence", "hidden"))},
             {"noise_pred": ("float32", ("batch", "latent_channels", "latent_height", "latent_width"))}),
    "vae_decoder": ({"latents": ("float32", ("batch", "latent_channels", "latent_height", "latent_width"))},
                    {"image": ("float32", ("batch", "channels", "height", "width"))}),
}
_OTHER_DIMS = {"pooler_output": ("batch", "hidden")}


@dataclass(frozen=True)
class OptimumComponent:
    """One model of an optimum export: ``path`` is ``model.onnx`` or ``openvino_model.xml``."""

    name: str
    format: str  # "onnx" or "openvino"
    path: Path
    config: dict[str, Any]


@dataclass(frozen=True)
class OptimumExport:
    """An optimum text-to-image export directory, read and checked (see :func:`read_optimum_export`)."""

    root: Path
    components: dict[str, OptimumComponent]
    scheduler: dict[str, Any]
    tokenizer_dir: Path
    model_index: dict[str, Any]

    @property
    def kind(self) -> str:
        """``optimum-onnx`` or ``optimum-openvino`` (the U-Net's format)."""
        return f"optimum-{self.components['unet'].format}"


def read_optimum_export(root: str | Path) -> OptimumExport:
    """Read an optimum ``text-to-image`` export directory (ONNX or OpenVINO IR).

    Raises:
        ImportSourceError: one message naming every missing file (model index, scheduler
            config, tokenizer files, each component's model file and config.json), or the file
            that is not valid JSON.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImportSourceError(f"'{root}': expected an optimum export directory, got "
                                f"{'a file' if root.exists() else 'no such directory'}")
    missing: list[str] = []
    model_index = _read_json(root, "model_index.json", missing)
    scheduler = _read_json(root, "scheduler/scheduler_config.json", missing)
    components = {}
    for name in SD_COMPONENTS:
        formats = [f for f, files in _MODEL_FILES.items() if all((root / name / n).is_file() for n in files)]
        if not formats:
            missing.append(f"{name}/model.onnx (or {name}/openvino_model.xml + .bin)")
        config = _read_json(root, f"{name}/config.json", missing)
        if formats:
            components[name] = OptimumComponent(name, formats[0], root / name / _MODEL_FILES[formats[0]][0], config)
    tok = root / "tokenizer"
    if not ((tok / "tokenizer.json").is_file() or all((tok / n).is_file() for n in ("vocab.json", "merges.txt"))):
        missing.append("tokenizer/tokenizer.json (or tokenizer/vocab.json + tokenizer/merges.txt)")
    if missing:
        raise ImportSourceError(f"'{root}': expected an optimum text-to-image export (optimum-cli export onnx "
                                f"--task text-to-image, or export openvino); missing {', '.join(missing)}")
    return OptimumExport(root, components, scheduler, tok, model_index)


def _read_json(root: Path, rel: str, missing: list[str]) -> dict[str, Any]:
    path = root / rel
    if not path.is_file():
        missing.append(rel)
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ImportSourceError(f"'{path}': expected JSON, could not parse it ({exc})") from exc


def import_optimum(source: str | Path, out: str | Path, *, atol: float = 1e-4, rtol: float = 0.0, seed: int = 0,
                   progress: ProgressCallback | None = None) -> Path:
    """Turn an optimum Stable Diffusion export into an edgegen artifact at ``out``.

    Args:
        source: a directory written by ``optimum-cli export onnx --task text-to-image`` or
            ``optimum-cli export openvino`` (FP32 or ``--weight-format int8``).
        out: the artifact directory, written atomically (nothing is written when a gate fails).
        atol, rtol: each component's parity gate, imported file through edgegen's engine vs
            optimum's file run directly: passes when max abs error <= atol + rtol * peak.
        seed: seed of the gate's inputs (N(0, 1) latents and hidden states, uniform token ids,
            one uniform timestep per call).
        progress: :data:`edgegen.progress.ProgressCallback`.
    Returns:
        ``out``. ONNX components are stored as ``<name>.onnx`` (run on ONNX Runtime or
        OpenVINO), OpenVINO IR as ``<name>.xml`` + ``<name>.bin`` (OpenVINO only); INT8
        weight-compressed IR is recorded with precision ``int8``.
    Raises:
        ImportSourceError: ``source`` is incomplete, or a graph lacks an input / output edgegen
            needs, or has another dtype (e.g. an ``--dtype fp16`` export).
        ParityError: a component's outputs differ beyond tolerance.
    """
    report = progress or silent
    src = read_optimum_export(source)
    with atomic_artifact(out) as (staging, manifest):
        tokenizer = _write_tokenizer(src, staging)
        sizes = _gate_sizes(src, tokenizer["max_length"])
        entries = {}
        for i, name in enumerate(SD_COMPONENTS):
            report("import: adapting graphs and checking parity", i, len(SD_COMPONENTS))
            entries[name] = _import_component(src.components[name], staging, sizes=sizes, seed=seed, atol=atol,
                                              rtol=rtol)
        report("import: adapting graphs and checking parity", len(SD_COMPONENTS), len(SD_COMPONENTS))
        vae = src.components["vae_decoder"].config
        scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
        manifest.update(
            family="stable-diffusion", components=entries, scheduler=src.scheduler, tokenizer=tokenizer,
            latent={"channels": sizes["latent_channels"], "scale_factor": scale,
                    "scaling_factor": float(vae.get("scaling_factor", 0.18215))},
            image={"channels": 3, "height": sizes["latent_height"] * scale, "width": sizes["latent_width"] * scale,
                   "output_range": [-1.0, 1.0]},
            source={"kind": src.kind, "from": str(src.root), "model_index": src.model_index})
    return Path(out)


def _gate_sizes(src: OptimumExport, max_length: int) -> dict[str, int]:
    """Sizes of the named dims: the U-Net's default latent size, the tokenizer's length, the text width."""
    unet, text = src.components["unet"].config, src.components["text_encoder"].config
    latent = int(unet.get("sample_size", 64))
    return {"batch": 2, "sequence": max_length, "hidden": int(text.get("hidden_size", unet.get("cross_attention_dim", 768))),
            "latent_channels": int(unet.get("in_channels", 4)), "latent_height": latent, "latent_width": latent,
            "channels": 3, "vocab": int(text.get("vocab_size", 49408)),
            "timesteps": int(src.scheduler.get("num_train_timesteps", 1000))}


def _write_tokenizer(src: OptimumExport, staging: Path) -> dict[str, Any]:
    """``tokenizer.json`` into the artifact: optimum's own when it wrote one, else built from
    CLIP's vocab.json / merges.txt. Returns the manifest's ``tokenizer`` entry."""
    from tokenizers import Tokenizer

    from ..tokenizer import clip_tokenizer_from_bpe

    tok_dir = src.tokenizer_dir
    config = _json_or_empty(tok_dir / "tokenizer_config.json")
    special = {**_json_or_empty(tok_dir / "special_tokens_map.json"), **config}
    token = lambda key, default: _content(special.get(key)) or default  # noqa: E731
    bos, eos = token("bos_token", "<|startoftext|>"), token("eos_token", "<|endoftext|>")
    if (tok_dir / "tokenizer.json").is_file():
        shutil.copyfile(tok_dir / "tokenizer.json", staging / "tokenizer.json")
        tok = Tokenizer.from_file(str(staging / "tokenizer.json"))
    else:
        vocab = json.loads((tok_dir / "vocab.json").read_text(encoding="utf-8"))
        lines = (tok_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line.strip() and not line.startswith("#version")]
        try:
            tok = clip_tokenizer_from_bpe(vocab, merges, bos=bos, eos=eos, unk=token("unk_token", eos))
        except KeyError as exc:
            raise ImportSourceError(f"'{tok_dir / 'vocab.json'}': expected tokens {bos!r} and {eos!r}, "
                                    f"{exc} is not there") from None
        tok.save(str(staging / "tokenizer.json"))
    pad = token("pad_token", eos)
    pad_id = tok.token_to_id(pad)
    if pad_id is None:
        raise ImportSourceError(f"'{tok_dir}': expected the pad token {pad!r} in the vocabulary, not found")
    positions = int(src.components["text_encoder"].config.get("max_position_embeddings", 77))
    max_length = min(int(config.get("model_max_length", positions)), positions)
    return {"file": "tokenizer.json", "max_length": max_length, "pad_id": int(pad_id)}


def _json_or_empty(path: Path) -> dict[str, Any]:
    """An optional JSON file: {} when absent; ImportSourceError when it does not parse."""
    return _read_json(path.parent, path.name, []) if path.is_file() else {}


def _content(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or ``{"content": ...}``."""
    return value.get("content") if isinstance(value, dict) else value


def _import_component(comp: OptimumComponent, staging: Path, *, sizes: Mapping[str, int], seed: int, atol: float,
                      rtol: float) -> dict[str, Any]:
    """Adapt one component into ``staging/<name>.<onnx|xml>``, gate it, return its manifest entry."""
    dst = staging / f"{comp.name}{_SUFFIX[comp.format]}"
    renames = _RENAMES[comp.name]
    if comp.format == "onnx":
        from .graphs import adapt_onnx
        edits = adapt_onnx(comp.path, dst, renames, external_prefix=dst.name)
    else:
        from .graphs import adapt_openvino
        edits = adapt_openvino(comp.path, dst, renames)
    backend = _BACKEND[comp.format]
    precision = _stored_precision(comp)
    feeds, reference = _reference(comp, renames, sizes, seed)
    # Both sides compute in f32: the gate measures the adaptation, not a precision hint.
    engine = load_engine(dst, backend, precision="fp32")
    figures = parity_gate(reference, engine(feeds), atol=atol, rtol=rtol,
                          what=f"import of '{comp.name}' ({backend}: imported file vs optimum's, seed {seed})")
    weights = [comp.path] + ([comp.path.with_suffix(".bin")] if comp.format == "openvino" else [])
    return {"file": dst.name, "format": comp.format, "precision": precision, **_manifest_io(comp.name, engine),
            "parity": {"reference": f"optimum file ({backend})", "runtime": backend, "seed": seed,
                       "inputs": {k: list(v.shape) for k, v in feeds.items()},
                       "output_shapes": {k: list(v.shape) for k, v in reference.items()}, "outputs": figures},
            "adapted": edits, "source_sha256": {p.name: sha256_file(p) for p in weights}}


def _stored_precision(comp: OptimumComponent) -> str:
    """``int8`` for OpenVINO IR weight-compressed by NNCF (optimum's ``--weight-format int8``), else ``fp32``."""
    if comp.format != "openvino":
        return "fp32"
    import openvino as ov

    model = ov.Core().read_model(str(comp.path))
    if not model.has_rt_info(["nncf", "weight_compression", "mode"]):
        return "fp32"
    mode = str(model.get_rt_info(["nncf", "weight_compression", "mode"]).astype(str))
    if mode.startswith("int8"):
        return "int8"
    raise ImportSourceError(f"'{comp.path}': expected FP32 or INT8 weights (--weight-format fp32 / int8), "
                            f"got NNCF weight compression mode '{mode}'")


def _check_inputs(comp: OptimumComponent, inputs: tuple[TensorSpec, ...]) -> None:
    """The graph's inputs (renamed, timestep as (batch,)) are exactly what edgegen's pipeline feeds, in its dtypes.

    Raises:
        ImportSourceError: naming each missing, extra (an SDXL U-Net's ``text_embeds``, an LCM's
            ``timestep_cond``) or mistyped input (an ``--dtype fp16`` export).
    """
    wanted = _CONVENTIONS[comp.name][0]
    have = {s.name: s for s in inputs}
    problems = [f"input '{n}' (has {sorted(have)})" for n in wanted if n not in have]
    problems += [f"no input '{n}' {s.describe()} (edgegen's {comp.name} takes {sorted(wanted)})"
                 for n, s in have.items() if n not in wanted]
    for name, (dtype, dims) in wanted.items():
        spec = have.get(name)
        if spec is not None and ((dtype and spec.dtype != dtype) or len(spec.shape) != len(dims)):
            problems.append(f"input '{name}' as {dtype or 'int64 or float32'} of rank {len(dims)}, got {spec.describe()}")
    if problems:
        raise ImportSourceError(f"'{comp.path}': {comp.name} expected " + "; ".join(problems))


def _check_outputs(comp: OptimumComponent, outputs: Mapping[str, np.ndarray]) -> None:
    """The outputs edgegen's pipeline reads are there (renamed), float32 of the right rank."""
    problems = []
    for name, (dtype, dims) in _CONVENTIONS[comp.name][1].items():
        value = outputs.get(name)
        if value is None:
            problems.append(f"output '{name}' (has {sorted(outputs)})")
        elif value.dtype != np.dtype(dtype) or value.ndim != len(dims):
            problems.append(f"output '{name}' as {dtype} of rank {len(dims)}, got {value.dtype} {value.shape}")
    if problems:
        raise ImportSourceError(f"'{comp.path}': {comp.name} expected " + "; ".join(problems))


def _gate_feeds(name: str, inputs: tuple[TensorSpec, ...], sizes: Mapping[str, int], seed: int) -> dict[str, np.ndarray]:
    """Seeded inputs in edgegen's names: N(0, 1) floats, token ids in [0, vocab), one timestep per call."""
    rng = np.random.default_rng(seed)
    dims = {**_CONVENTIONS[name][0], **_CONVENTIONS[name][1]}
    feeds = {}
    for spec in inputs:
        roles = dims.get(spec.name, (None, ()))[1]
        shape = tuple(d if isinstance(d, int) else sizes[roles[i]] for i, d in enumerate(spec.shape))
        if name == "vae_decoder":
            shape = (1, *shape[1:2], *(min(s, 32) for s in shape[2:]))
        if spec.name == "timestep":
            feeds[spec.name] = np.full(shape, rng.integers(0, sizes["timesteps"]), dtype=spec.dtype)
        elif spec.name == "input_ids":
            feeds[spec.name] = rng.integers(0, sizes["vocab"], shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def _reference(comp: OptimumComponent, renames: Mapping[str, str], sizes: Mapping[str, int],
               seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """optimum's own file run directly on seeded inputs: (feeds, outputs), both in edgegen's names.

    Its inputs, renamed and with the timestep as (batch,), are checked against what edgegen's
    pipeline feeds before anything runs. The runtime is released on return, so the import never
    holds optimum's weights and the imported copy at once.
    """
    if comp.format == "onnx":
        import onnxruntime as ort

        from ..runtimes.onnxruntime import _specs

        session = ort.InferenceSession(str(comp.path), providers=["CPUExecutionProvider"])
        specs = _specs(session.get_inputs())
        run = lambda f: dict(zip([o.name for o in session.get_outputs()], session.run(None, f)))  # noqa: E731
    else:
        import openvino as ov

        from ..runtimes.openvino import _specs

        core = ov.Core()
        model = core.read_model(str(comp.path))
        specs = _specs(model.inputs)
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        del model
        run = lambda f: {p.any_name: v for p, v in compiled(f).items()}  # noqa: E731
    ours = tuple(TensorSpec(renames.get(s.name, s.name), (None,) if s.name == "timestep" else s.shape, s.dtype)
                 for s in specs)
    _check_inputs(comp, ours)
    feeds = _gate_feeds(comp.name, ours, sizes, seed)
    original = {}
    for spec, mine in zip(specs, ours):
        value = feeds[mine.name]
        if spec.name == "timestep" and spec.shape in ((), (1,)):
            # optimum's single timestep: a scalar or shape [1] where edgegen feeds (batch,) equal values.
            value = value[:1].reshape(spec.shape)
        original[spec.name] = value
    outputs = {renames.get(k, k): np.asarray(v) for k, v in run(original).items()}
    _check_outputs(comp, outputs)
    return feeds, outputs


def _manifest_io(name: str, engine) -> dict[str, list[dict]]:
    """Inputs / outputs as the manifest records them: the graph's fixed sizes, edgegen's names for dynamic dims."""
    dims = {**_CONVENTIONS[name][0], **_CONVENTIONS[name][1]}

    def entry(spec: TensorSpec) -> dict:
        roles = dims[spec.name][1] if spec.name in dims else _OTHER_DIMS.get(spec.name, ())
        shape = [d if isinstance(d, int) else (roles[i] if i < len(roles) else f"dim{i}") for i, d in enumerate(spec.shape)]
        return {"name": spec.name, "shape": shape, "dtype": spec.dtype}

    return {"inputs": [entry(s) for s in engine.inputs], "outputs": [entry(s) for s in engine.outputs]}
