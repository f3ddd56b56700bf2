"""Reports of ``edgegen bench``: report.json (every figure with its unit), report.md, report.html."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic, write_text_atomic
from ..images import grid, to_uint8
from .steps import StepsToQuality, plot as plot_steps

UNITS = {"load_s": "s", "first_run_s": "s", "seconds_per_image": "s/image", "images_per_second": "images/s",
         "peak_rss_mb": "MiB", "largest_stage_mb": "MiB", "largest_component_mb": "MiB", "size_mb": "MiB", "outside_share": "fraction of wall time",
         "engine_sum_ratio": "wall time / sum of engine time", "engines.seconds_per_image": "s/image",
         "quality.psnr_db": "dB vs FP32 on the same noise", "quality.ssim": "SSIM vs FP32 (0..1)",
         "decoders.*.decode_s_per_image": "s/image in the decoder engine",
         "decoders.*.seconds_per_image": "s/image end to end with that decoder",
         "decoders.tiny_vs_full.psnr_db": "dB, tiny vs full decoder on the same latents",
         "decoders.tiny_vs_full.ssim": "SSIM, tiny vs full decoder on the same latents (0..1)",
         "decoders.decode_speedup": "full decode time / tiny decode time"}


def _label(row: dict) -> str:
    shapes, memory = row.get("shapes", "auto"), row.get("memory", "default")
    return (f"{row['name']} · {row['backend']} · {row['precision']}" + ("" if shapes == "auto" else f" · {shapes}")
            + ("" if memory == "default" else f" · {memory} memory"))


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _plot(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({n for r in rows for n in r["engines"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows)), 3.6))
    bottom = np.zeros(len(rows))
    for name in names:
        values = np.array([r["engines"].get(name, {}).get("seconds_per_image", 0.0) for r in rows])
        ax.bar(range(len(rows)), values, bottom=bottom, label=name)
        bottom += values
    outside = np.array([r["seconds_per_image"]["median"] for r in rows]) - bottom
    ax.bar(range(len(rows)), np.maximum(outside, 0), bottom=bottom, label="outside engines", color="#bbbbbb")
    ax.set_xticks(range(len(rows)), [_label(r).replace(" · ", "\n") for r in rows], fontsize=7)
    ax.set_ylabel("seconds per image")
    ax.set_title("Latency per component and precision")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    head = ["configuration", "s/image (median)", "p90", "images/s", "load s", "first run s", "outside engines",
            "peak RSS MiB", "largest stage MiB", "size MiB", "PSNR dB", "SSIM", "classifier conf.", "FD vs FP32", "time ratio"]
    body = []
    for r in rows:
        q, c = r.get("quality", {}), r.get("classifier", {})
        body.append([_label(r), f"{r['seconds_per_image']['median']:.4f}", f"{r['seconds_per_image']['p90']:.4f}",
                     f"{r['images_per_second']:.2f}", f"{r['load_s']:.2f}", f"{r['first_run_s']:.3f}",
                     f"{100 * r['outside_share']:.2f}%", f"{r['peak_rss_mb']:.0f}",
                     _stage(r), f"{r['size_mb']:.1f}",
                     f"{q['psnr_db']['median']:.2f}" if q else "", f"{q['ssim']['mean']:.4f}" if q else "",
                     f"{c['mean_confidence']:.3f}" if c else "",
                     f"{c['frechet_distance_vs_fp32']:.3f}" if "frechet_distance_vs_fp32" in c else "",
                     f"{r['ratio_vs_first']['seconds_per_image']:.3f}"])
    return head, body


def _stage(row: dict) -> str:
    """Low memory: the largest stage (weights + activations) and which; default: the largest component."""
    if row.get("largest_stage_mb") is not None:
        return f"{row['largest_stage_mb']:.0f} ({row['largest_stage']})"
    if row.get("largest_component_mb") is not None:
        return f"component {row['largest_component']} {row['largest_component_mb']:.0f}"
    return ""


def _decoder_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Rows with a tiny decoder: both decoders' time and the tiny one's quality cost."""
    head = ["configuration", "full decode ms/image", "tiny decode ms/image", "decode speedup",
            "s/image full", "s/image tiny", "PSNR tiny vs full dB (median)", "SSIM tiny vs full"]
    body = []
    for r in rows:
        d = r.get("decoders")
        if d:
            q = d["tiny_vs_full"]
            body.append([_label(r), f"{1000 * d['full']['decode_s_per_image']:.1f}",
                         f"{1000 * d['tiny']['decode_s_per_image']:.1f}", f"{d['decode_speedup']:.1f}x",
                         f"{d['full']['seconds_per_image']:.4f}", f"{d['tiny']['seconds_per_image']:.4f}",
                         f"{q['psnr_db']['median']:.2f}", f"{q['ssim']['mean']:.4f}"])
    return head, body


def _figure(images: np.ndarray, label: str) -> str:
    return (f"<figure><img alt='{html.escape(label)}' src='data:image/png;base64,"
            f"{_png(grid(to_uint8(images), columns=min(4, len(images))))}'><figcaption>{html.escape(label)}</figcaption></figure>")


def write_reports(report: dict, out: str | Path, *, steps_to_quality: StepsToQuality | None = None) -> dict[str, Path]:
    """Write report.json / report.md / report.html into ``out`` (atomically, umask modes); returns their paths.

    ``steps_to_quality`` (:func:`edgegen.bench.steps.read`) adds its figures: a table in report.md,
    a plot in report.html (agreement and Fréchet distance vs steps), the rows in report.json.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = report["results"]
    clean = {**report, "units": UNITS,
             "results": [{k: v for k, v in r.items() if k not in ("images", "images_tiny")} for r in rows]}
    if steps_to_quality is not None:
        clean["steps_to_quality"] = steps_to_quality.as_dict()
    write_json_atomic(out / "report.json", clean)

    head, body = _table(rows)
    comp_head = ["configuration", *sorted({n for r in rows for n in r["engines"]})]
    comp_body = [[_label(r), *[f"{1000 * r['engines'][n]['seconds_per_image']:.1f} ms ({r['component_precision'].get(n, '')})"
                               if n in r["engines"] else "" for n in comp_head[1:]]] for r in rows]
    m = report["machine"]
    md = [f"# edgegen bench\n\nMachine: {m['cpu']}, {m['cores']} cores; "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + "\n",
          "## End to end\n", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
          *["| " + " | ".join(b) + " |" for b in body],
          "\n## Engine time per component (per image)\n", "| " + " | ".join(comp_head) + " |", "|" + "---|" * len(comp_head),
          *["| " + " | ".join(b) + " |" for b in comp_body],
          "\nPSNR / SSIM compare each configuration with the FP32 run of the same artifact on the same noise. "
          "Time ratio is relative to the first row."]
    dec_head, dec_body = _decoder_table(rows)
    if dec_body:
        md += ["\n## Decoders: full vs tiny on the same latents\n", "| " + " | ".join(dec_head) + " |",
               "|" + "---|" * len(dec_head), *["| " + " | ".join(b) + " |" for b in dec_body]]
    md += _steps_md(steps_to_quality)
    write_text_atomic(out / "report.md", "\n".join(md) + "\n")

    def html_table(h, b):
        return ("<table><tr>" + "".join(f"<th>{html.escape(x)}</th>" for x in h) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in row) + "</tr>" for row in b) + "</table>")

    grids = "".join(_figure(r["images"], _label(r)) + (_figure(r["images_tiny"], _label(r) + " · tiny decoder")
                                                       if "images_tiny" in r else "") for r in rows)
    decoders = f"<h2>Decoders: full vs tiny on the same latents</h2>{html_table(dec_head, dec_body)}" if dec_body else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>edgegen bench</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}figure{{display:inline-block;margin:8px}}
img{{image-rendering:pixelated;max-width:360px;min-width:160px}}</style></head><body>
<h1>edgegen bench</h1><p>{html.escape(m['cpu'])}, {m['cores']} cores</p>
<h2>End to end</h2>{html_table(head, body)}
<h2>Engine time per component</h2>{html_table(comp_head, comp_body)}
{decoders}
<h2>Latency per component</h2><img id="plot" alt="latency plot" style="max-width:900px" src="data:image/png;base64,{_plot(rows)}">
{_steps_html(steps_to_quality)}<h2>Images (same noise; FP32 and quantized side by side)</h2><div id="grids">{grids}</div>
</body></html>"""
    write_text_atomic(out / "report.html", page)
    return {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}


def _steps_md(data: StepsToQuality | None) -> list[str]:
    if data is None:
        return []
    return [f"\n## Steps to quality ({data.samples} samples per setting, guidance {data.guidance_scale:g})\n",
            "| setting | steps | samples | classified as requested | FD to real |", "|---|---|---|---|---|",
            *[f"| {r.name} | {r.steps} | {r.samples} | {100 * r.agreement:.1f}% | {r.fd_real:.2f} |" for r in data.rows]]


def _steps_html(data: StepsToQuality | None) -> str:
    if data is None:
        return ""
    png = base64.b64encode(plot_steps(data)).decode()
    return (f"<h2>Steps to quality</h2><p>{data.samples} samples per setting, guidance {data.guidance_scale:g}: "
            "share classified as the requested class and Fréchet distance of classifier features to real data; "
            "bands span a reference setting's seeds (the sampling noise).</p>"
            f"<img id=\"steps-plot\" alt=\"steps to quality plot\" style=\"max-width:1000px\" src=\"data:image/png;base64,{png}\">")


def load(path: str | Path) -> dict:
    """Read a report.json written by :func:`write_reports`."""
    return json.loads(Path(path).read_text())
