"""Pipelines over engines: text-to-image and unconditional diffusion, GAN / VAE decoding.

Embedding API::

    from edgegen import Pipeline
    pipe = Pipeline.load("art/sd")                 # OpenVINO if installed, else ONNX Runtime
    result = pipe("a lighthouse at dusk", num_inference_steps=20, seed=1)
    result.save("out/")                             # PNGs with prompt / seed / sampler chunks
"""

from __future__ import annotations

from pathlib import Path

from ..artifact import Artifact
from .base import EngineHook, Generation
from .decoder import DecoderPipeline
from .diffusion import DiffusionPipeline

__all__ = ["DecoderPipeline", "DiffusionPipeline", "Generation", "Pipeline"]


class Pipeline:
    """Factory: ``Pipeline.load(path)`` returns the pipeline for the artifact's family."""

    @staticmethod
    def load(path: str | Path, *, backend: str | None = None, precision: str | None = None,
             device: str | None = None, engine_hook: EngineHook | None = None,
             compute: str | None = None, shapes: str = "auto", memory: str = "default",
             memory_budget: int | None = None) -> DiffusionPipeline | DecoderPipeline:
        """Load an artifact directory.

        Args:
            backend: "openvino", "onnxruntime" or "tensorrt"; None picks OpenVINO when installed.
            precision: which file variant runs: None (as stored) or a stored variant ("int8",
                "fp16"); "bf16" still means ``compute="bf16"``.
            compute: how FP32 files compute: None / "f32" exactly, "bf16" in BF16 (OpenVINO;
                measure it: faster only on CPUs with BF16 units).
            engine_hook: wraps every engine as it is loaded, ``hook(component, engine) -> engine``
                (e.g. :class:`edgegen.calibration.record.FeedRecorder`); in low-memory mode at every load.
            memory: "default" (every component loaded now and kept: the fastest) or "low" (each
                loaded when its stage starts and freed when it ends; the peak is the largest stage
                plus its activations; every call loads again), :class:`edgegen.types.MemoryMode`.
            memory_budget: bytes of process RSS a VAE decode may reach before it is tiled
                automatically; None: low mode the peak of the stages before the decode, default mode
                RSS + MemAvailable (:mod:`edgegen.pipelines.budget`).
            shapes: OpenVINO compiles for each call's exact shapes ("static", compiled at the first
                call with them, kept per shape, cheap again through the model cache), once for any
                shape ("dynamic"), or per component as measured faster ("auto");
                :class:`edgegen.types.ShapeMode`, docs/memory.md.
        Raises:
            ArtifactError, BackendUnavailableError.
        """
        artifact = Artifact.load(path)
        cls = DiffusionPipeline if artifact.family in ("stable-diffusion", "unet") else DecoderPipeline
        return cls(artifact, backend=backend, precision=precision, device=device, engine_hook=engine_hook,
                   compute=compute, shapes=shapes, memory=memory, memory_budget=memory_budget)
