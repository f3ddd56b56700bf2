"""Steps to quality in the bench report: read a sampler-comparison results file, plot it.

A results file (``benchmarks/steps_to_quality.py`` writes one) scores sampler settings on a
class-conditional model with a classifier: the share of samples classified as the requested
class and the Fréchet distance of the classifier's features to real data. :func:`read` checks it
once; :func:`plot` draws both figures against the step count, one line per (sampler, sigmas),
with a reference setting run at several seeds drawn as a band (its seed-to-seed spread: the
sampling noise the other settings are read against).
"""

from __future__ import annotations

import io
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError


@dataclass(frozen=True)
class StepsRow:
    """One sampler setting's figures.

    Attributes:
        name: the setting's label, e.g. "dpmpp-2m karras 10".
        sampler, sigmas: :class:`edgegen.types.Sampler` and ``SigmaSchedule`` values.
        steps: sampler steps (>= 1); seed: the seed of its first batch.
        samples: images scored; agreement: share classified as requested, in [0, 1];
        fd_real: Fréchet distance of classifier features to real data (>= 0, lower is better).
    """

    name: str
    sampler: str
    sigmas: str
    steps: int
    seed: int
    samples: int
    agreement: float
    fd_real: float


@dataclass(frozen=True)
class StepsToQuality:
    """A results file: ``samples`` per setting (the fewest any row has), CFG ``guidance_scale``, rows."""

    samples: int
    guidance_scale: float
    rows: tuple[StepsRow, ...]

    def as_dict(self) -> dict:
        return {"samples": self.samples, "guidance_scale": self.guidance_scale,
                "rows": [vars(r) for r in self.rows]}


_FIELDS = {"name": str, "sampler": str, "sigmas": str, "steps": int, "seed": int, "agreement": float, "fd_real": float}


def read(path: str | Path) -> StepsToQuality:
    """Read and check a steps-to-quality results file.

    Expected JSON: ``{"samples": int, "guidance_scale": number, "rows": [{"name", "sampler",
    "sigmas", "steps", "seed", "agreement", "fd_real", "samples"?}, ...]}``; a row without its own
    ``samples`` has the file's.
    Raises:
        InputError: unreadable JSON, or a key missing or of the wrong type (naming the key, the
            expected type and the value found).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--steps-to-quality '{path}': expected a JSON results file, got {exc}") from None
    samples = _field(data, "samples", int, path)
    guidance = _field(data, "guidance_scale", float, path)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise InputError(f"--steps-to-quality '{path}': key 'rows' expected a non-empty list, got {rows!r:.80}")
    parsed = []
    for i, row in enumerate(rows):
        values = {k: _field(row, k, kind, path, f"rows[{i}].") for k, kind in _FIELDS.items()}
        own = _field(row, "samples", int, path, f"rows[{i}].") if isinstance(row, dict) and "samples" in row else samples
        parsed.append(StepsRow(samples=own, **values))
    return StepsToQuality(samples=min(r.samples for r in parsed), guidance_scale=guidance, rows=tuple(parsed))


def _field(data, key: str, kind: type, path, where: str = ""):
    value = data.get(key) if isinstance(data, dict) else None
    ok = (isinstance(value, str) if kind is str else
          isinstance(value, numbers.Real) and not isinstance(value, bool)
          and (kind is float or float(value).is_integer()))
    if not ok:
        raise InputError(f"--steps-to-quality '{path}': key '{where}{key}' expected {kind.__name__}, got {value!r:.80}")
    return value if kind is str else kind(value)


def _groups(data: StepsToQuality) -> tuple[dict, dict]:
    """(lines, bands): rows by (sampler, sigmas); a group run at one step count is a band."""
    groups: dict[tuple[str, str], list[StepsRow]] = {}
    for row in data.rows:
        groups.setdefault((row.sampler, row.sigmas), []).append(row)
    lines = {k: sorted(v, key=lambda r: (r.steps, r.seed)) for k, v in groups.items() if len({r.steps for r in v}) > 1}
    bands = {k: v for k, v in groups.items() if k not in lines}
    return lines, bands


def plot(data: StepsToQuality) -> bytes:
    """A PNG (two panels: agreement in %, Fréchet distance to real on a log axis, against steps).

    Lines: one per (sampler, sigmas) run at several step counts (the first seed at each count);
    the distance axis is logarithmic when its values span more than 5x.
    Bands: a setting run at one step count, spanning its seeds' values. Agreement points far
    below the bands are drawn on the axis's lower edge, labelled with their value.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    lines, bands = _groups(data)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn = []
    for ax, key, label in ((axes[0], "agreement", "classified as requested (%)"),
                           (axes[1], "fd_real", "Fréchet distance to real")):
        scale = 100.0 if key == "agreement" else 1.0
        _draw_bands(ax, bands, key, scale)
        for (sampler, sigmas), rows in lines.items():
            first = {}
            for r in rows:
                first.setdefault(r.steps, getattr(r, key) * scale)
            drawn += ax.plot(list(first), list(first.values()), "o-", label=f"{sampler} {sigmas}")
        ax.set_xlabel("steps")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r.steps for rows in lines.values() for r in rows}))
        ax.grid(alpha=0.3)
    fds = [r.fd_real for r in data.rows]
    if max(fds) > 5 * min(fds):  # a failed setting would flatten the rest
        axes[1].set_yscale("log")
        axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axes[1].yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if str(v)[0] in "2356" else ""))
    _clip_low(axes[0], [line for line in drawn if line.axes is axes[0]], bands)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(f"Steps to quality: {data.samples} samples per setting, guidance {data.guidance_scale:g}", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _draw_bands(ax, bands: dict, key: str, scale: float) -> None:
    for i, ((sampler, sigmas), rows) in enumerate(bands.items()):
        values = [getattr(r, key) * scale for r in rows]
        color = f"C{7 + i}"
        ax.axhspan(min(values), max(values), color=color, alpha=0.25,
                   label=f"{sampler} {rows[0].steps} ({len(rows)} seed{'s' if len(rows) > 1 else ''})")
        for v in values:
            ax.axhline(v, color=color, lw=0.8, ls="--")


def _clip_low(ax, lines: list, bands: dict) -> None:
    """Keep the agreement axis on the bands' neighbourhood; line points below it sit on the edge, labelled."""
    if not bands or not lines:
        return
    floor = min(r.agreement * 100 for rows in bands.values() for r in rows) - 6
    if min(min(line.get_ydata()) for line in lines) >= floor:
        return
    ax.set_ylim(floor, 100.5)
    for line in lines:
        for x, y in zip(line.get_xdata(), line.get_ydata()):
            if y < floor:
                ax.plot([x], [floor], "v", color=line.get_color(), clip_on=False)
                ax.annotate(f"{y:.0f}%", (x, floor), xytext=(6, 4), textcoords="offset points", fontsize=8,
                            color=line.get_color())
