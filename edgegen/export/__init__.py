"""Torch -> ONNX export: the only subpackage that imports torch, diffusers or transformers."""

import os

# transformers prints image-processor notices on import that do not concern export; users can
# still raise the level by setting the variable themselves.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from .module import Kind, ModuleExportOptions, export_module

__all__ = ["Kind", "ModuleExportOptions", "export_module", "export_stable_diffusion"]


def export_stable_diffusion(*args, **kwargs):
    """See :func:`edgegen.export.diffusers.export_stable_diffusion` (imports diffusers lazily)."""
    from .diffusers import export_stable_diffusion as impl
    return impl(*args, **kwargs)
