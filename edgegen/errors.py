"""Typed errors raised by edgegen.

Every error names the thing at fault, what was expected and what was received, so the
CLI can print it as one line (see ``edgegen.cli``).
"""

from __future__ import annotations


class EdgegenError(Exception):
    """Base class of every error edgegen raises on purpose."""


class EngineInputError(EdgegenError, ValueError):
    """Feeds given to an engine do not match its inputs (names, dtypes or shapes)."""


class EngineLoadError(EdgegenError):
    """A backend could not load or compile a model file."""


class BackendUnavailableError(EdgegenError, ImportError):
    """A backend's package is not installed or cannot run on this machine."""

    def __init__(self, backend: str, extra: str | None = None, reason: str | None = None):
        self.backend = backend
        msg = f"backend '{backend}' is not available"
        if reason:
            msg += f": {reason}"
        if extra:
            msg += f" (install it with: pip install 'edgegen[{extra}]')"
        super().__init__(msg)


class ArtifactError(EdgegenError):
    """An artifact directory or its ``edgegen.json`` is missing, malformed or unsupported."""


class ScheduleError(EdgegenError, ValueError):
    """A scheduler config asks for something edgegen does not implement."""


class ParityError(EdgegenError):
    """An exported or compiled model's outputs differ from the reference beyond tolerance."""


class UnsafeCheckpointError(EdgegenError):
    """A checkpoint needs arbitrary code to unpickle; edgegen refuses to load it."""


class ExportError(EdgegenError):
    """Exporting a model failed for a reason the user can act on."""


class InputError(EdgegenError, ValueError):
    """A value the user gave (an option, an array file) is malformed, out of range, or does not
    apply to the artifact. The message names the option as the user typed it (``--height``)."""


class NonFiniteError(EdgegenError, ArithmeticError):
    """A tensor that must be finite holds NaN or Inf: an engine's input or output, or a user's array.

    Attributes:
        component: the engine (model file) or option at fault, e.g. ``"unet.onnx"``.
        tensor: the tensor's name, e.g. ``"noise_pred"``.
        role: ``"input"`` (fed by the caller) or ``"output"`` (computed by the engine); ``""``
            with ``tensor=""`` for a user's array (the component then names it).
        step: the sampling step (1-based) where known, else None.
    """

    def __init__(self, component: str, tensor: str, role: str, detail: str, step: int | None = None,
                 steps: int | None = None):
        self.component, self.tensor, self.role, self.detail = component, tensor, role, detail
        self.step, self.steps = step, steps
        where = "" if step is None else f" at step {step}" + (f"/{steps}" if steps else "")
        cause = {"output": " (the engine computed it from finite inputs)",
                 "input": " (the caller fed it; the engine was not run)"}.get(role, "")
        what = f"{role} '{tensor}' expects" if tensor else "expected"
        super().__init__(f"{component}{where}: {what} finite values, got {detail}{cause}")

    def at_step(self, step: int, steps: int | None = None) -> "NonFiniteError":
        """The same error, naming the sampling step where it happened."""
        return NonFiniteError(self.component, self.tensor, self.role, self.detail, step, steps)


class ManifestError(ArtifactError):
    """A value in ``edgegen.json`` has the wrong type, is out of range, or is missing.

    Attributes:
        key: the key path, e.g. ``components.unet.inputs[0].shape``.
        expected: what the format allows there (words).
        received: the value found (``MISSING`` when the key is absent).
    """

    MISSING = object()

    def __init__(self, key: str, expected: str, received, where: str = "edgegen.json"):
        self.key, self.expected, self.received = key, expected, received
        got = "nothing (missing)" if received is ManifestError.MISSING else _short_repr(received)
        super().__init__(f"{where}: {key}: expected {expected}, got {got}")


def _short_repr(value) -> str:
    """``repr`` cut to about 80 characters without building the whole text of a huge value."""
    import reprlib

    short = reprlib.Repr()
    short.maxstring, short.maxother, short.maxlist, short.maxdict, short.maxlevel = 60, 60, 6, 4, 2
    return short.repr(value)


class ImportSourceError(EdgegenError):
    """A directory given to ``edgegen import`` is not a complete export edgegen can import."""


class MissingDependencyError(EdgegenError, ImportError):
    """An optional package a feature needs is not installed; the message names the extra that brings it."""

    def __init__(self, package: str, *, what: str, extra: str):
        self.package, self.extra = package, extra
        super().__init__(f"{what} needs '{package}', which is not installed "
                         f"(install it with: pip install 'edgegen[{extra}]')")
