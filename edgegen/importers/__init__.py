"""Importers: other toolchains' exports in, edgegen artifacts out, without torch.

Like ``export``, an import is a toolchain step: a path in, an artifact path out, keyword-only
options, ending in a parity gate. ``optimum`` reads Hugging Face optimum's Stable Diffusion
exports (ONNX and OpenVINO IR).
"""

from __future__ import annotations

from .optimum import OptimumExport, import_optimum, read_optimum_export

__all__ = ["OptimumExport", "import_optimum", "read_optimum_export"]
