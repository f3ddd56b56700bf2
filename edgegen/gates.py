"""Parity gates: compare outputs with a reference and raise on failure.

Every export, quantize and compile step ends in one (optimum's ``_run_validation``, Apple
ml-stable-diffusion's PSNR floor). All failing outputs are reported at once; a failure is
never downgraded to a warning.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .errors import ParityError


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | None | bool]:
    """Max-abs error, max error relative to the reference's peak magnitude, and PSNR (dB).

    PSNR uses the reference's value range (max - min) as the peak; None when the outputs are equal.
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        raise ParityError(f"shape mismatch: expected {ref.shape}, got {got.shape}")
    err = np.abs(ref - got)
    max_abs = float(err.max()) if err.size else 0.0
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    mse = float((err**2).mean()) if err.size else 0.0
    value_range = float(ref.max() - ref.min()) if ref.size else 0.0
    # None stands for infinite PSNR (identical outputs): JSON has no infinity.
    psnr = None if mse == 0 else float(10 * np.log10(max(value_range, 1e-12) ** 2 / mse))
    return {"max_abs": max_abs, "max_rel": max_abs / peak if peak else max_abs, "psnr_db": psnr,
            "finite": bool(np.isfinite(got).all())}


def parity_gate(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                atol: float, rtol: float, what: str) -> dict[str, dict[str, float]]:
    """Check every output: passes when ``max_abs <= atol + rtol * max|reference|`` and finite.

    Returns:
        per-output figures (see :func:`compare`) with the tolerances used.
    Raises:
        ParityError: listing every failing output with its figures and the tolerance.
    """
    figures, failures = {}, []
    for name, ref in reference.items():
        if name not in candidate:
            failures.append(f"output '{name}' missing (got {sorted(candidate)})")
            continue
        fig = compare(ref, candidate[name])
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
