"""The library's vocabulary as enums: what an artifact is, where it runs, in what precision, with
which sampler. The CLI uses these same enums for its choices (``str`` enums: a value compares equal
to its string, so ``Backend.openvino == "openvino"``)."""

from __future__ import annotations

from enum import Enum


class Family(str, Enum):
    """What an artifact holds (``edgegen.json`` ``family``)."""

    stable_diffusion = "stable-diffusion"  # text encoder + U-Net + VAE decoder (+ optional extras)
    unet = "unet"  # a diffusion U-Net alone (unconditional or class-conditional)
    generator = "generator"  # GAN generator: z -> image
    vae_decoder = "vae-decoder"  # latents -> image


class ModelKind(str, Enum):
    """What a user's torch module is, for ``edgegen export --module`` (``--kind``): a diffusion
    U-Net ``forward(sample, timestep[, class_labels])``, a GAN generator ``forward(z)`` or a VAE
    decoder ``forward(latents)``. Each exports to the artifact family of the same name."""

    unet, generator, vae_decoder = "unet", "generator", "vae-decoder"


class Backend(str, Enum):
    """Inference engines edgegen runs (``edgegen.runtimes``)."""

    openvino, onnxruntime, tensorrt = "openvino", "onnxruntime", "tensorrt"


class Precision(str, Enum):
    """Which stored file variant of a component runs (weights and graph as written)."""

    fp32, fp16, int8 = "fp32", "fp16", "int8"


class ComputeHint(str, Enum):
    """How a backend computes an FP32 file: ``f32`` exactly, or ``bf16`` (OpenVINO's
    ``INFERENCE_PRECISION_HINT``; faster only on CPUs with native BF16, measure it)."""

    f32, bf16 = "f32", "bf16"


class MemoryMode(str, Enum):
    """How a pipeline holds its components (``Pipeline.load(memory=)``, ``edgegen run --memory``):
    ``default`` loads every one at load time and keeps them (the fastest); ``low`` loads each when its
    stage starts and frees it when the stage ends, so the peak is the largest stage, not the sum."""

    default, low = "default", "low"


class PredictionType(str, Enum):
    """What a diffusion U-Net predicts (diffusers ``prediction_type``): the noise, v (Salimans &
    Ho 2022) or the clean sample x0."""

    epsilon, v_prediction, sample = "epsilon", "v_prediction", "sample"


class Sampler(str, Enum):
    """Sampling algorithms (:mod:`edgegen.samplers`); names as ``edgegen run --sampler``."""

    ddpm = "ddpm"  # Ho et al. 2020, ancestral
    ddim = "ddim"  # Song et al. 2021; eta 0 deterministic
    euler = "euler"  # Karras et al. 2022, alg. 1 without churn
    euler_a = "euler-a"  # Euler ancestral (k-diffusion)
    dpmpp_2m = "dpmpp-2m"  # DPM-Solver++ 2M, Lu et al. 2022
    lcm = "lcm"  # Latent Consistency Models, Luo et al. 2023, multistep consistency sampling


class SigmaSchedule(str, Enum):
    """How the noise levels of a run are spaced (``edgegen run --sigmas``)."""

    discrete = "discrete"  # the training sigmas at the spaced timesteps (diffusers' default)
    karras = "karras"  # Karras et al. 2022, eq. 5, rho 7
    exponential = "exponential"  # uniform in log sigma


class Decoder(str, Enum):
    """Which VAE decoder turns a Stable Diffusion run's latents into pixels (``edgegen run --decoder``)."""

    full = "full"  # the model's own AutoencoderKL decoder (component vae_decoder)
    tiny = "tiny"  # a distilled tiny decoder, TAESD (component vae_decoder_tiny, export --tiny-vae)


def parse_enum(enum: type[Enum], value, what: str):
    """``enum(value)`` or a ``ValueError`` naming ``what``, the allowed values and the value given."""
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum)
        raise ValueError(f"{what}: expected one of {allowed}, got {value!r}") from None


class ShapeMode(str, Enum):
    """How OpenVINO compiles a component (``Pipeline.load(shapes=)``, ``edgegen run --shapes``):
    ``dynamic`` once for any size; ``static`` for each call's exact shapes (batch incl. the CFG
    batch, height, width, sequence), compiled at the first call with them and kept per shape;
    ``auto`` whichever docs/memory.md measured faster for the component. Other backends run
    their graphs as built (``static`` is refused there)."""

    auto, static, dynamic = "auto", "static", "dynamic"
