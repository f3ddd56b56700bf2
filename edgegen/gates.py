"""Parity gates: compare outputs with a reference and raise on failure.

Every export, quantize and compile step ends in one (optimum's ``_run_validation``, Apple
ml-stable-diffusion's PSNR floor). All failing outputs are reported at once; a failure is
never downgraded to a warning.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import EdgegenError, ParityError
from .metrics import error_figures


def parity_gate(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                atol: float, rtol: float, what: str) -> dict[str, dict[str, float]]:
    """Check every output: passes when ``max_abs <= atol + rtol * max|reference|`` and finite.

    Args:
        reference, candidate: outputs by name, arrays of any real dtype and matching shapes.
        atol, rtol: absolute tolerance and tolerance relative to the reference's peak magnitude.
        what: the thing checked, for the message ("unet export").
    Returns:
        per-output figures (see :func:`edgegen.metrics.error_figures`) with the tolerances used.
    Raises:
        ParityError: listing every failing output with its figures and the tolerance.
    """
    figures, failures = {}, []
    for name, ref in reference.items():
        if name not in candidate:
            failures.append(f"output '{name}' missing (got {sorted(candidate)})")
            continue
        try:
            fig = error_figures(ref, candidate[name])
        except EdgegenError as exc:  # a shape mismatch is one more failing output
            failures.append(f"output '{name}': {exc}")
            continue
        limit = atol + rtol * float(np.abs(ref).max())
        fig.update(atol=atol, rtol=rtol)
        figures[name] = fig
        if not fig["finite"] or fig["max_abs"] > limit:
            failures.append(f"output '{name}': max_abs {fig['max_abs']:.3g} > limit {limit:.3g} "
                            f"(atol {atol:g} + rtol {rtol:g} * peak), max_rel {fig['max_rel']:.3g}"
                            + ("" if fig["finite"] else ", non-finite values"))
    if failures:
        raise ParityError(f"{what}: parity gate failed: " + "; ".join(failures))
    return figures
