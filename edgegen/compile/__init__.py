"""Compile: an artifact's ONNX components -> engines for one device, cached in the artifact.

``edgegen compile ART --backend tensorrt [--fp16] [--int8] [--min/--opt/--max]`` and
:func:`compile` build TensorRT engines into ``ART/engines/`` (see :mod:`edgegen.compile.tensorrt`);
pipelines only load what was built there. OpenVINO and ONNX Runtime compile their models when
they load them and need no step here. Specs and profiles are plain data
(:mod:`edgegen.compile.profiles`), testable without a GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..progress import ProgressCallback
from ..types import Backend, Precision, parse_enum
from .profiles import MAX_PROMPT_WINDOWS, EngineSpec, engine_specs

__all__ = ["EngineSpec", "compile", "engine_specs"]


def compile(artifact: str | Path, *, backend: Backend = Backend.tensorrt,  # noqa: A001 (the step's name)
            precisions: Sequence[Precision] = (Precision.fp32,), min: Sequence[int] | None = None,
            opt: Sequence[int] | None = None, max: Sequence[int] | None = None,
            prompt_windows: int = MAX_PROMPT_WINDOWS, progress: ProgressCallback | None = None) -> Path:
    """Build the engines of every component of the artifact at ``artifact`` for this machine's GPU.

    Args:
        backend: only :attr:`Backend.tensorrt` builds ahead of time.
        precisions: engines to build: fp32, fp16 (layers that overflow kept in FP32), int8 (from
            the ONNX Runtime QDQ variant ``edgegen quantize --backend onnxruntime`` writes).
        min, opt, max: ``(HEIGHT, WIDTH[, BATCH])`` optimization-profile points in pixels and
            images per pipeline call (default: the artifact's image size, one image).
        prompt_windows: the most 75-token prompt windows a Stable Diffusion call may use (long
            prompts, :data:`~edgegen.compile.profiles.MAX_PROMPT_WINDOWS` by default): the text
            encoder accepts ``max batch * prompt_windows`` rows, the U-Net up to
            ``77 * prompt_windows`` tokens of ``encoder_hidden_states``.
        progress: ``(stage, done, total)`` per precision over the components.
    Returns:
        ``ART/engines``, holding the engines and the ``index.json`` pipelines load them by.
    Raises:
        ValueError: a backend other than tensorrt. BackendUnavailableError: no TensorRT / GPU.
        EngineLoadError, ParityError, EdgegenError, ArtifactError: see
        :func:`edgegen.compile.tensorrt.compile_tensorrt`.
    """
    from ..artifact import Artifact

    backend = parse_enum(Backend, backend, "compile backend")
    if backend is not Backend.tensorrt:
        raise ValueError(f"compile backend: expected tensorrt ({backend.value} compiles its models when it "
                         f"loads them), got {backend.value!r}")
    from .tensorrt import compile_tensorrt

    precisions = [parse_enum(Precision, p, "precision") for p in precisions]
    return compile_tensorrt(Artifact.load(artifact), precisions, min=min, opt=opt, max=max,
                            prompt_windows=prompt_windows, progress=progress)
