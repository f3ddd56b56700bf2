"""Export of diffusers Stable Diffusion 1.x / 2.x pipelines (a local directory or a hub id)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import torch

from ..artifact import Artifact, atomic_artifact
from ..checksums import sha256_file
from ..compile.openvino import add_openvino_ir
from ..errors import ExportError
from ..progress import ProgressCallback, silent
from ..runtimes.base import TensorSpec
from .onnx import ComponentSpec, export_component, finish_component, trace_component

if TYPE_CHECKING:
    from ..calibration.int8 import Int8Options

SD_COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
TINY_DECODER = "vae_decoder_tiny"


class _TextEncoder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, input_ids):
        return self.net(input_ids, return_dict=False)[0]


class _UNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.net(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class _GuidanceEmbeddedUNet(_UNet):
    """An LCM-distilled U-Net (``time_cond_proj_dim``): guidance enters as ``timestep_cond``."""

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond):
        return self.net(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond, return_dict=False)[0]


class _VaeDecoder(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents, return_dict=False)[0]


class _VaeEncoder(torch.nn.Module):
    """image -> (mean, std) of the VAE's diagonal Gaussian latent distribution (before scaling_factor):
    diffusers' ``DiagonalGaussianDistribution`` (logvar clamped to [-30, 20], std = exp(logvar / 2)),
    so the runtime can sample ``mean + std * noise`` as ``retrieve_latents`` does."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, image):
        dist = self.vae.encode(image, return_dict=False)[0]
        return dist.mean, dist.std


class _TinyVaeDecoder(torch.nn.Module):
    """diffusers' ``AutoencoderTiny.decode`` (TAESD) on the full decoder's input.

    The full decoder's graph takes x0 / SD's ``scaling_factor``; a pipeline with ``vae=AutoencoderTiny``
    decodes x0 / the tiny VAE's own ``scaling_factor`` (1.0 for TAESD). ``input_scale`` (the ratio of
    the two) is applied first, so both graphs take the same ``latents`` and ``_decode`` is shared.
    """

    def __init__(self, tiny, input_scale: float):
        super().__init__()
        self.tiny, self.input_scale = tiny, float(input_scale)

    def forward(self, latents):
        return self.tiny.decode(latents * self.input_scale, return_dict=False)[0]


def quiet_hugging_face() -> None:
    """Silence diffusers' / transformers' info logs and per-file progress bars during export."""
    import diffusers.utils.logging as dlog
    import transformers.utils.logging as tlog

    for log in (dlog, tlog):
        log.set_verbosity_error()
        log.disable_progress_bar()


def _from_pretrained(load: Callable, source: str, subfolder: str | None, *, flag: str = "--from",
                     what: str = "a diffusers Stable Diffusion directory with '{subfolder}/'"):
    """Call a ``from_pretrained`` and turn 'cannot get it' into one clear line naming ``flag``."""
    local = Path(source).is_dir()
    try:
        return load(source, subfolder=subfolder)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if local:
            raise ExportError(f"{flag} '{source}': expected {what.format(subfolder=subfolder)}, could not load it "
                              f"({first})") from exc
        raise ExportError(f"{flag} '{source}': not a local directory, and the Hugging Face hub could not "
                          f"provide '{subfolder or 'config.json'}' (offline or unreachable? {first})") from exc


def _check_hub_reachable(source: str, flag: str = "--from") -> None:
    """Fail in one line, at once, when a hub id is given and the hub's host does not resolve.

    huggingface_hub would otherwise retry with back-off for about half a minute per file.
    """
    import os
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            socket.getaddrinfo(host, 443)
            return
        except OSError as exc:
            reason = f"{host} does not resolve: {exc}"
    raise ExportError(f"{flag} '{source}': not a local directory, and the Hugging Face hub is unreachable "
                      f"({reason}); download the model elsewhere and pass its directory")


def _weights_digest(source: str, subfolder: str | None) -> dict[str, str] | None:
    folder = Path(source) / (subfolder or "")
    if not folder.is_dir():
        return None
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.suffix in (".safetensors", ".bin", ".pt", ".pth")}


def _check_components(components: Iterable[str]) -> tuple[str, ...]:
    components = tuple(components)
    unknown = set(components) - set(SD_COMPONENTS)
    if unknown or not components:
        raise ExportError(f"components: expected some of {SD_COMPONENTS}, got {components}")
    return components


def _load_vae(source: str):
    from diffusers import AutoencoderKL

    return _from_pretrained(lambda s, subfolder: AutoencoderKL.from_pretrained(s, subfolder=subfolder,
                                                                               torch_dtype=torch.float32),
                            source, "vae").eval()


def _load_tiny_vae(source: str, vae):
    """diffusers' ``AutoencoderTiny`` at ``source`` (a directory or hub id), checked against the SD VAE.

    Raises:
        ExportError: unreadable / unreachable, or its latent channels, upscale factor or image
            channels differ from the SD VAE's (a TAESD3 / TAEF1 directory for an SD 1.x pipeline).
    """
    from diffusers import AutoencoderTiny

    if not Path(source).is_dir():
        _check_hub_reachable(source, "--tiny-vae")
    tiny = _from_pretrained(lambda s, subfolder: AutoencoderTiny.from_pretrained(s, torch_dtype=torch.float32),
                            source, None, flag="--tiny-vae",
                            what="a diffusers AutoencoderTiny directory (config.json + weights; TAESD for SD 1.x/2.x)")
    config = tiny.config
    ours = (int(vae.config.latent_channels), 2 ** (len(vae.config.block_out_channels) - 1), 3)
    theirs = (int(config.latent_channels), int(config.upsampling_scaling_factor) ** (len(config.num_decoder_blocks) - 1),
              int(config.out_channels))
    if theirs != ours:
        raise ExportError(f"--tiny-vae '{source}': expected an AutoencoderTiny for this VAE's latent space "
                          f"({ours[0]} latent channels, {ours[1]}x upscale, {ours[2]} image channels; TAESD for "
                          f"SD 1.x/2.x), got {theirs[0]} latent channels, {theirs[1]}x upscale, {theirs[2]} image channels")
    return tiny.eval()


def _fit_preview(vae, scale: int, report: ProgressCallback) -> dict:
    """The manifest's ``preview`` record: :func:`edgegen.preview.fit_projection` on the torch VAE."""
    from ..preview import fit_projection

    report("fitting the preview projection", 0, None)

    def decode(latents):
        with torch.no_grad():
            return vae.decode(torch.from_numpy(latents), return_dict=False)[0].numpy()

    return fit_projection(decode, channels=int(vae.config.latent_channels), scale_factor=scale,
                          scaling_factor=float(vae.config.scaling_factor))


def _load_scheduler_config(source: str) -> dict:
    from diffusers.configuration_utils import ConfigMixin

    class _Config(ConfigMixin):
        config_name = "scheduler_config.json"

    return dict(_from_pretrained(lambda s, subfolder: _Config.load_config(s, subfolder=subfolder), source, "scheduler"))


class _Exporter:
    """Exports the components of one diffusers pipeline into a staging directory, one method each."""

    def __init__(self, source: str, staging: Path, *, atol: float, rtol: float, seed: int, report: ProgressCallback):
        self.source, self.staging, self.report = source, staging, report
        self.gate = dict(atol=atol, rtol=rtol, seed=seed, progress=report)
        self.max_length, self.hidden, self.sample_size = 77, None, None
        self.tiny_source: str | None = None
        self.guidance_embedding: dict | None = None

    def _export(self, module, spec: ComponentSpec, subfolder: str) -> dict:
        entry = export_component(module, spec, self.staging / f"{spec.name}.onnx", **self.gate)
        entry["source_sha256"] = _weights_digest(self.source, subfolder)
        return entry

    def text_encoder(self, text_encoder) -> dict:
        spec = ComponentSpec("text_encoder", (TensorSpec("input_ids", ("batch", self.max_length), "int64"),),
                             (TensorSpec("last_hidden_state", ("batch", self.max_length, self.hidden), "float32"),),
                             sizes={"batch": 2}, int_high=int(text_encoder.config.vocab_size))
        return self._export(_TextEncoder(text_encoder).eval(), spec, "text_encoder")

    def unet(self) -> dict:
        from diffusers import UNet2DConditionModel

        self.report("loading the U-Net", 0, None)
        unet = _from_pretrained(lambda s, subfolder: UNet2DConditionModel.from_pretrained(
            s, subfolder=subfolder, torch_dtype=torch.float32), self.source, "unet").eval()
        self.sample_size = size = int(unet.config.sample_size)
        c, cross = int(unet.config.in_channels), int(unet.config.cross_attention_dim)
        inputs = (TensorSpec("sample", ("batch", c, "latent_height", "latent_width"), "float32"),
                  TensorSpec("timestep", ("batch",), "float32"),
                  TensorSpec("encoder_hidden_states", ("batch", "sequence", cross), "float32"))
        wrapper = _UNet(unet)
        dim = unet.config.get("time_cond_proj_dim")
        if dim is not None:  # LCM-distilled: the w-embedding of the guidance scale is an input
            inputs += (TensorSpec("timestep_cond", ("batch", int(dim)), "float32"),)
            wrapper = _GuidanceEmbeddedUNet(unet)
            self.guidance_embedding = {"type": "lcm", "input": "timestep_cond", "dim": int(dim)}
        spec = ComponentSpec(
            "unet", inputs, (TensorSpec("noise_pred", ("batch", c, "latent_height", "latent_width"), "float32"),),
            sizes={"batch": 2, "latent_height": size, "latent_width": size, "sequence": self.max_length})
        path = self.staging / "unet.onnx"
        traced = trace_component(wrapper, spec, path, seed=self.gate["seed"], progress=self.report)
        # The torch U-Net goes before the ONNX proto and the parity session are loaded: at SD 1.5
        # size each is another 3.4 GB copy of the weights.
        del unet, wrapper
        gc.collect()
        entry = finish_component(traced, path, atol=self.gate["atol"], rtol=self.gate["rtol"], progress=self.report)
        entry["source_sha256"] = _weights_digest(self.source, "unet")
        return entry

    def vae_decoder(self, vae, size: int) -> dict:
        channels = int(vae.config.latent_channels)
        spec = ComponentSpec(
            "vae_decoder", (TensorSpec("latents", ("batch", channels, "latent_height", "latent_width"), "float32"),),
            (TensorSpec("image", ("batch", 3, "height", "width"), "float32"),),
            sizes={"batch": 1, "latent_height": min(size, 32), "latent_width": min(size, 32)})
        return self._export(_VaeDecoder(vae), spec, "vae")

    def vae_encoder(self, vae, size: int, scale: int) -> dict:
        channels = int(vae.config.latent_channels)
        latent = ("batch", channels, "latent_height", "latent_width")
        side = min(size, 32)
        spec = ComponentSpec(
            "vae_encoder", (TensorSpec("image", ("batch", 3, "height", "width"), "float32"),),
            (TensorSpec("latent_mean", latent, "float32"), TensorSpec("latent_std", latent, "float32")),
            sizes={"batch": 1, "height": side * scale, "width": side * scale})
        return self._export(_VaeEncoder(vae), spec, "vae")


    def vae_decoder_tiny(self, tiny, vae, size: int) -> tuple[dict, dict]:
        """The ``vae_decoder_tiny`` entry and the manifest's ``tiny_decoder`` record."""
        channels = int(vae.config.latent_channels)
        input_scale = float(vae.config.scaling_factor) / float(tiny.config.scaling_factor)
        spec = ComponentSpec(
            TINY_DECODER, (TensorSpec("latents", ("batch", channels, "latent_height", "latent_width"), "float32"),),
            (TensorSpec("image", ("batch", 3, "height", "width"), "float32"),),
            sizes={"batch": 1, "latent_height": min(size, 32), "latent_width": min(size, 32)})
        entry = export_component(_TinyVaeDecoder(tiny, input_scale).eval(), spec,
                                 self.staging / f"{TINY_DECODER}.onnx", **self.gate)
        entry["source_sha256"] = _weights_digest(self.tiny_source, None)
        record = {"source": self.tiny_source, "latent_channels": channels,
                  "scaling_factor": float(tiny.config.scaling_factor), "input_scale": input_scale}
        return entry, record


def _export_components(exporter: _Exporter, components: tuple[str, ...], vae, tiny=None) -> dict:
    """The manifest entries of the exported components (text encoder, U-Net, VAE decoder, VAE encoder,
    tiny VAE decoder in order), and ``tiny_decoder`` -> its record when ``tiny`` (an AutoencoderTiny) is
    given; ``("export: components ...", done, total)`` after each, for the progress bar's ETA."""
    from transformers import CLIPTextModel

    entries, stage = {}, "export: components (traced to ONNX and gated)"
    count, total = [0], len(components) + (tiny is not None)
    exporter.report(stage, 0, total)

    def done(name: str, entry: dict) -> None:
        entries[name] = entry
        count[0] += 1
        exporter.report(stage, count[0], total)

    if "text_encoder" in components or "unet" in components:
        text_encoder = _from_pretrained(CLIPTextModel.from_pretrained, exporter.source, "text_encoder").float().eval()
        exporter.hidden = int(text_encoder.config.hidden_size)
        exporter.max_length = int(text_encoder.config.max_position_embeddings)
        if "text_encoder" in components:
            done("text_encoder", exporter.text_encoder(text_encoder))
        del text_encoder  # not resident while the U-Net is exported
    if "unet" in components:
        done("unet", exporter.unet())
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    size = exporter.sample_size or int(vae.config.sample_size) // scale
    if "vae_decoder" in components:
        done("vae_decoder", exporter.vae_decoder(vae, size))
    if "vae_encoder" in components:
        done("vae_encoder", exporter.vae_encoder(vae, size, scale))
    if tiny is not None:
        entry, entries["tiny_decoder"] = exporter.vae_decoder_tiny(tiny, vae, size)
        done(TINY_DECODER, entry)
    return entries


def export_stable_diffusion(source: str | Path, out: str | Path, *, components: Iterable[str] = SD_COMPONENTS,
                            atol: float = 1e-4, rtol: float = 1e-3, seed: int = 0, int8: "Int8Options | None" = None,
                            tiny_vae: str | Path | None = None, openvino_ir: bool = True,
                            progress: ProgressCallback | None = None) -> Path:
    """Export a diffusers Stable Diffusion pipeline (or some of its components) to an artifact.

    Args:
        source: a local diffusers directory (``model_index.json``, ``unet/``, ``vae/``,
            ``text_encoder/``, ``tokenizer/``, ``scheduler/``) or a hub id.
        components: any of ``text_encoder``, ``unet``, ``vae_decoder``, ``vae_encoder``; the first
            three give a runnable text-to-image artifact, with ``vae_encoder`` (the default) also
            image-to-image; fewer a partial one (for benchmarking or quantizing).
        tiny_vae: a diffusers ``AutoencoderTiny`` directory or hub id (``madebyollin/taesd`` for
            SD 1.x/2.x), exported as a second decoder ``vae_decoder_tiny`` taking the same
            ``latents`` as ``vae_decoder`` (``Pipeline(..., decoder="tiny")``; gated against
            ``AutoencoderTiny.decode`` like every component). Needs ``vae_decoder`` in a text-to-image export.
        openvino_ir: also store each FP32 component as OpenVINO IR with FP16-stored weights, what
            the OpenVINO backend then loads (:func:`edgegen.compile.openvino.add_openvino_ir`;
            with openvino installed).
        progress: ``(stage, done, total)`` messages per loading / tracing / gating step.
    Graphs have dynamic batch and spatial dims; the U-Net's timestep is float32 (batch,); an LCM U-Net
    (``time_cond_proj_dim``) also takes ``timestep_cond`` (batch, dim) float32 (manifest ``guidance_embedding``).
    LoRA adapters are not applied: fuse them (diffusers' ``fuse_lora``) and save before exporting.
    The tokenizer is saved as ``tokenizer.json`` for the ``tokenizers`` package; the scheduler
    config is copied into the manifest; with a VAE decoder, the linear latent -> RGB projection
    of previews is fitted on it (:func:`edgegen.preview.fit_projection`, manifest ``preview``). With ``int8`` options, INT8 variants of the exported
    components are added behind the quality and speed gates (as ``edgegen quantize``) before
    anything is written.

    Raises:
        ExportError: unreadable directory or unreachable hub; a tiny VAE for another latent space,
            or without the VAE decoder; ParityError from a gate.
    """
    from transformers import CLIPTokenizer

    quiet_hugging_face()
    source, components, report = str(source), _check_components(components), progress or silent
    if not Path(source).is_dir():
        _check_hub_reachable(source)
    report("reading scheduler config and tokenizer", 0, None)
    scheduler = _load_scheduler_config(source)
    tokenizer = _from_pretrained(CLIPTokenizer.from_pretrained, source, "tokenizer")
    report("loading the VAE", 0, None)
    vae = _load_vae(source)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    tiny = _tiny_for(tiny_vae, components, vae, report)
    with atomic_artifact(out) as (staging, manifest):
        exporter = _Exporter(source, staging, atol=atol, rtol=rtol, seed=seed, report=report)
        exporter.tiny_source = None if tiny_vae is None else str(tiny_vae)
        entries = _export_components(exporter, components, vae, tiny)
        extras = {"tiny_decoder": entries.pop("tiny_decoder", None),
                  "preview": _fit_preview(vae, scale, report) if "vae_decoder" in components else None,
                  "guidance_embedding": exporter.guidance_embedding}
        tokenizer_entry = None
        if "text_encoder" in components:
            tokenizer.backend_tokenizer.save(str(staging / "tokenizer.json"))
            tokenizer_entry = {"file": "tokenizer.json", "max_length": exporter.max_length,
                               "pad_id": int(tokenizer.pad_token_id)}
        image_size = (exporter.sample_size or int(vae.config.sample_size) // scale) * scale
        manifest.update(
            family="vae-decoder" if components == ("vae_decoder",) else "stable-diffusion", components=entries,
            scheduler=scheduler, tokenizer=tokenizer_entry,
            latent={"channels": int(vae.config.latent_channels), "scale_factor": scale,
                    "scaling_factor": float(vae.config.scaling_factor)},
            image={"channels": 3, "height": image_size, "width": image_size, "output_range": [-1.0, 1.0]},
            source={"kind": "diffusers", "from": source, "model_index": _read_json(Path(source) / "model_index.json")},
            **{k: v for k, v in extras.items() if v is not None})
        if openvino_ir:
            add_openvino_ir(Artifact.staged(staging, manifest), atol=atol, rtol=rtol, seed=seed, progress=progress)
        if int8 is not None:
            from ..calibration.int8 import quantize_artifact
            del vae, tiny  # no torch weights stay resident while quantizing
            gc.collect()
            quantize_artifact(staging, manifest, int8, progress=progress)
    return Path(out)


def _tiny_for(tiny_vae, components: tuple[str, ...], vae, report: ProgressCallback):
    """The loaded AutoencoderTiny for ``--tiny-vae``, or None; refused without the VAE decoder."""
    if tiny_vae is None:
        return None
    if "vae_decoder" not in components or components == ("vae_decoder",):
        raise ExportError(f"--tiny-vae '{tiny_vae}': expected a text-to-image export with the VAE decoder "
                          f"(--model sd), got components {list(components)}")
    report("loading the tiny VAE", 0, None)
    return _load_tiny_vae(str(tiny_vae), vae)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
