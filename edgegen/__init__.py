"""edgegen: export, quantize and run image generators on edge engines.

Importing edgegen imports numpy only; engines load their backend on first use and nothing
here ever imports torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]


def __getattr__(name):
    if name == "Pipeline":
        from .pipelines import Pipeline
        return Pipeline
    raise AttributeError(f"module 'edgegen' has no attribute '{name}'")
