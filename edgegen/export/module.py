"""Export of user-defined torch models: ``--module FILE.py:CALLABLE --kind unet|generator|vae-decoder``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from ..artifact import Artifact, atomic_artifact
from ..compile.openvino import add_openvino_ir

if TYPE_CHECKING:
    from ..calibration.int8 import Int8Options
from ..errors import ExportError
from ..progress import ProgressCallback
from ..runtimes.base import TensorSpec
from ..schedules import NoiseSchedule
from ..types import ModelKind
from .checkpoint import build_module, split_module_spec
from .onnx import ComponentSpec, export_component


Kind = ModelKind  # the name export_module's callers have used


def _first_tensor(out):
    """Models return a tensor, a tuple, or a diffusers output with ``.sample``."""
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


class _UNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, sample, timestep):
        return _first_tensor(self.net(sample, timestep))


class _ClassUNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, sample, timestep, class_labels):
        return _first_tensor(self.net(sample, timestep, class_labels))


class _Generator(torch.nn.Module):
    def __init__(self, net, image_shape):
        super().__init__()
        self.net, self.image_shape = net, tuple(image_shape)

    def forward(self, z):
        return _first_tensor(self.net(z)).reshape(z.shape[0], *self.image_shape)


class _Decoder(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, latents):
        return _first_tensor(self.net(latents))


@dataclass(frozen=True)
class ModuleExportOptions:
    """Per-kind options of :func:`export_module` (flat data; unused ones are ignored by a kind).

    Attributes:
        sample_shape: unet: (C, H, W) of ``sample``.
        timestep_dtype: unet: "int64" or "float32".
        scheduler_config: unet: path to a diffusers ``scheduler_config.json``.
        latent_shape: generator: (D,) or (D, H, W) of ``z``.
        image_shape: generator: (C, H, W) the output is reshaped to.
        latent_channels, scale_factor, scaling_factor: vae-decoder: latent channels, spatial
            upscale of the decoder, and the factor latents are divided by before decoding.
        output_range: (lo, hi) value range of the produced image.
        height, width: vae-decoder: default image size recorded in the manifest.
        num_classes: unet: class-conditional with this many classes; forward(sample, timestep,
            class_labels) then, labels int64 (batch,).
        null_class: unet: the label of the unconditional branch for classifier-free guidance
            (default ``num_classes``); None with num_classes means no guidance.
        class_names: unet: display names of the classes (default "0".."N-1").
        guidance_interval: unet: recommended (sigma_lo, sigma_hi] where CFG applies, recorded
            as the runtime's default (:mod:`edgegen.guidance`); None: every step.
    """

    sample_shape: tuple[int, ...] | None = None
    timestep_dtype: str = "int64"
    scheduler_config: Path | None = None
    latent_shape: tuple[int, ...] | None = None
    image_shape: tuple[int, ...] | None = None
    latent_channels: int | None = None
    scale_factor: int = 8
    scaling_factor: float = 1.0
    output_range: tuple[float, float] = (-1.0, 1.0)
    height: int = 256
    width: int = 256
    num_classes: int | None = None
    null_class: int | None = None
    class_names: tuple[str, ...] | None = None
    guidance_interval: tuple[float, float] | None = None


def _require(value, flag: str, kind: str):
    if value is None:
        raise ExportError(f"--kind {kind} needs {flag}")
    return value


def _plan(kind: Kind, opts: ModuleExportOptions) -> tuple[Callable, ComponentSpec, dict]:
    """The wrapper, the graph spec and the manifest fields for one kind."""
    lo, hi = opts.output_range
    if kind is Kind.unet:
        c, h, w = _require(opts.sample_shape, "--sample-shape C,H,W", kind.value)
        config_path = _require(opts.scheduler_config, "--scheduler-config JSON", kind.value)
        try:
            config = json.loads(Path(config_path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExportError(f"--scheduler-config: expected a readable JSON file, got '{config_path}' ({exc})") from exc
        schedule = NoiseSchedule.from_config(config)  # refuse what the runtime cannot sample
        if opts.timestep_dtype not in ("int64", "float32"):
            raise ExportError(f"--timestep-dtype: expected int64 or float32, got '{opts.timestep_dtype}'")
        inputs = [TensorSpec("sample", ("batch", c, h, w), "float32"),
                  TensorSpec("timestep", ("batch",), opts.timestep_dtype)]
        fields = {"scheduler": config, "latent": {"shape": [c, h, w]},
                  "image": {"channels": c, "height": h, "width": w, "output_range": [lo, hi]}}
        wrap = _UNet
        if opts.guidance_interval is not None and not opts.num_classes:
            raise ExportError(f"--guidance-interval {opts.guidance_interval}: expected with --num-classes N "
                              "(class-conditional U-Nets), got no --num-classes")
        if opts.num_classes:
            inputs.append(TensorSpec("class_labels", ("batch",), "int64"))
            null = opts.num_classes if opts.null_class is None else opts.null_class
            names = list(opts.class_names or [str(i) for i in range(opts.num_classes)])
            fields["conditioning"] = {"type": "class", "num_classes": opts.num_classes, "null_class": null,
                                      "class_names": names}
            if opts.guidance_interval is not None:
                from ..guidance import check_interval
                try:
                    fields["conditioning"]["guidance_interval"] = list(check_interval(opts.guidance_interval))
                except ValueError as exc:
                    raise ExportError(str(exc)) from None
            wrap = _ClassUNet
        spec = ComponentSpec("unet", tuple(inputs), (TensorSpec("noise_pred", ("batch", c, h, w), "float32"),),
                             sizes={"batch": 2}, int_high={"timestep": schedule.num_train_timesteps,
                                                            "class_labels": (opts.num_classes or 0) + 1})
        return wrap, spec, fields
    if kind is Kind.generator:
        latent = _require(opts.latent_shape, "--latent-shape D[,H,W]", kind.value)
        c, h, w = _require(opts.image_shape, "--image-shape C,H,W", kind.value)
        spec = ComponentSpec("generator", (TensorSpec("z", ("batch", *latent), "float32"),),
                             (TensorSpec("image", ("batch", c, h, w), "float32"),), sizes={"batch": 2})
        fields = {"latent": {"shape": list(latent)},
                  "image": {"channels": c, "height": h, "width": w, "output_range": [lo, hi]}}
        return (lambda net: _Generator(net, (c, h, w))), spec, fields
    channels = _require(opts.latent_channels, "--latent-channels C", kind.value)
    f = opts.scale_factor
    spec = ComponentSpec("vae_decoder", (TensorSpec("latents", ("batch", channels, "latent_height", "latent_width"), "float32"),),
                         (TensorSpec("image", ("batch", "channels", "height", "width"), "float32"),),
                         sizes={"batch": 1, "latent_height": 8, "latent_width": 8})
    fields = {"latent": {"channels": channels, "scale_factor": f, "scaling_factor": opts.scaling_factor},
              "image": {"height": opts.height, "width": opts.width, "output_range": [lo, hi]}}
    return _Decoder, spec, fields


# The flags that set each kind's input and output shapes, as ``edgegen export`` spells them.
_SHAPE_FLAGS = {Kind.unet: ("--sample-shape", "sample_shape"),
                Kind.generator: ("--latent-shape / --image-shape", "latent_shape", "image_shape"),
                Kind.vae_decoder: ("--latent-channels", "latent_channels")}


def _dry_run(wrapped: torch.nn.Module, spec: ComponentSpec, kind: Kind, opts: ModuleExportOptions, seed: int) -> None:
    """One eager forward at the export's example inputs, before tracing: a shape option that
    does not fit the model is reported by its flag, not as the tracer's RuntimeError.

    Raises:
        ExportError: the forward failed, or (unet) returned a shape other than the sample's.
    """
    flag, *fields = _SHAPE_FLAGS[kind]
    given = " ".join(",".join(map(str, getattr(opts, f))) if isinstance(getattr(opts, f), tuple)
                     else str(getattr(opts, f)) for f in fields)
    feeds = spec.example(seed)
    shapes = {name: tuple(v.shape) for name, v in feeds.items()}
    try:
        with torch.no_grad():
            out = _first_tensor(wrapped(*(torch.from_numpy(feeds[s.name]) for s in spec.inputs)))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{flag} {given}: expected shapes the model accepts, but calling it on inputs {shapes} "
                          f"failed: {first}") from None
    if kind is Kind.unet and tuple(out.shape) != shapes["sample"]:
        raise ExportError(f"{flag} {given}: expected the U-Net to return the sample's shape {shapes['sample']}, "
                          f"got {tuple(out.shape)}")


def export_module(module_spec: str, out: str | Path, *, kind: Kind | str, weights: str | Path | None = None,
                  options: ModuleExportOptions = ModuleExportOptions(), atol: float = 1e-4, rtol: float = 1e-3,
                  seed: int = 0, int8: "Int8Options | None" = None, openvino_ir: bool = True,
                  progress: ProgressCallback | None = None) -> Path:
    """Export a user's torch model (``FILE.py:CALLABLE``) as an edgegen artifact at ``out``.

    ``CALLABLE(weights_path)`` (or ``CALLABLE()`` without weights) must return a
    ``torch.nn.Module``. The weights file is opened with ``weights_only=True`` first.
    With ``int8`` options, INT8 variants are added behind the quality and speed gates
    (:func:`edgegen.calibration.int8.quantize_artifact`) before anything is written.
    ``openvino_ir`` also stores the FP32 graph as OpenVINO IR with FP16-stored weights, what the
    OpenVINO backend then loads (:func:`edgegen.compile.openvino.add_openvino_ir`).

    Returns:
        the artifact directory.
    Raises:
        ExportError, UnsafeCheckpointError, ParityError, ScheduleError, QualityGateError:
            nothing is written then.
    """
    split_module_spec(module_spec)
    kind = Kind(kind)
    wrap, spec, fields = _plan(kind, options)
    net, digest = build_module(module_spec, weights)
    wrapped = wrap(net).eval()
    _dry_run(wrapped, spec, kind, options, seed)
    with atomic_artifact(out) as (staging, manifest):
        entry = export_component(wrapped, spec, staging / f"{spec.name}.onnx", atol=atol, rtol=rtol,
                                 seed=seed, progress=progress)
        if kind is Kind.vae_decoder:
            fields["image"]["channels"] = entry["parity"]["output_shapes"]["image"][1]
        entry["source_sha256"] = digest
        manifest.update(family=kind.value, components={spec.name: entry},
                        source={"kind": "module", "module": module_spec,
                                "weights": str(weights) if weights else None, "sha256": digest}, **fields)
        if openvino_ir:
            add_openvino_ir(Artifact.staged(staging, manifest), atol=atol, rtol=rtol, seed=seed, progress=progress)
        if int8 is not None:
            from ..calibration.int8 import quantize_artifact
            quantize_artifact(staging, manifest, int8, progress=progress)
    return Path(out)

