"""One measurement, in its own process so peak memory and warm caches do not leak between runs.

    python -m edgegen.bench.worker CONFIG.json

CONFIG holds artifact, backend, precision, shapes (OpenVINO shape mode), steps, runs, warmup, seed, prompt, num_images,
images_out (.npy) and result_out (.json).

Peak RSS is this process's own high-water mark: ``VmHWM`` of ``/proc/self/status`` on Linux.
Not ``ru_maxrss``: Linux carries the maximum RSS over ``exec``, and Python's subprocess starts
children with ``vfork``, so a worker's ``ru_maxrss`` starts at its parent's peak (1038 MiB for
every configuration inside ``edgegen demo``, against 104-123 MiB measured alone). Elsewhere
``ru_maxrss`` (kilobytes on Linux and BSD, bytes on macOS) is the fallback.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


TINY = "vae_decoder_tiny"


def _generate(pipe, cfg: dict, seed: int, decoder: str = "full"):
    from ..pipelines import DecoderPipeline

    if isinstance(pipe, DecoderPipeline):
        return pipe(num_images=cfg["num_images"], seed=seed)
    kwargs = dict(num_inference_steps=cfg["steps"], seed=seed, num_images=cfg["num_images"])
    if pipe.text_to_image:
        return pipe(cfg["prompt"], guidance_scale=cfg["guidance_scale"], height=cfg.get("height"),
                    width=cfg.get("width"), sampler=cfg.get("sampler"), decoder=decoder, **kwargs)
    return pipe(sampler=cfg.get("sampler"), **kwargs)


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (:func:`edgegen.memory.peak_rss_bytes`; the module
    docstring says why not ru_maxrss)."""
    from ..memory import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def _decoders(pipe, cfg: dict, full: list) -> dict:
    """Full vs tiny decoder on the same latents (same seed, so the same sampling): each decoder's
    engine seconds per image and end-to-end seconds per image (medians over ``runs``), and PSNR /
    SSIM of the tiny decoder's images against the full decoder's (:func:`edgegen.metrics.image_figures`).
    The tiny decoder's last images go to ``images_out`` with the suffix ``.tiny.npy``."""
    from ..metrics import image_figures

    tiny = [_generate(pipe, cfg, cfg["seed"], decoder="tiny") for _ in range(max(1, cfg["runs"]))]

    def figures(runs: list, name: str) -> dict:
        per = lambda key: float(np.median([key(r) / len(r.images) for r in runs]))  # noqa: E731
        return {"decode_s_per_image": per(lambda r: r.timings["engines"][name]["seconds"]),
                "seconds_per_image": per(lambda r: r.timings["total_s"])}

    np.save(str(Path(cfg["images_out"]).with_suffix(".tiny.npy")), tiny[-1].images)
    result = {"full": figures(full, "vae_decoder"), "tiny": figures(tiny, TINY),
              "tiny_vs_full": image_figures(list(full[-1].images), list(tiny[-1].images))}
    result["decode_speedup"] = result["full"]["decode_s_per_image"] / max(result["tiny"]["decode_s_per_image"], 1e-12)
    return result


def measure(cfg: dict) -> dict:
    """Load the configuration's pipeline, generate ``warmup`` + ``runs`` times, save the last images.

    Returns the figures of one report row: seconds (load, first run, per image: median, p90,
    every run), images per second, per-engine seconds per image and calls, the share of wall
    time outside engines, component precisions, ``peak_rss_mb`` (MiB, :func:`peak_rss_mib`), the
    memory mode, and the largest component / largest stage (MiB; :func:`edgegen.pipelines.base.memory_report`);
    with a tiny decoder, ``decoders`` (:func:`_decoders`), measured after the peak RSS.
    """
    from ..pipelines import Pipeline
    from ..pipelines.base import memory_report

    start = time.perf_counter()
    pipe = Pipeline.load(cfg["artifact"], backend=cfg["backend"], precision=cfg["precision"],
                         shapes=cfg.get("shapes", "auto"), memory=cfg.get("memory", "default"))
    load_s = time.perf_counter() - start
    first = _generate(pipe, cfg, cfg["seed"])
    runs = []
    for i in range(cfg["warmup"]):
        _generate(pipe, cfg, cfg["seed"])
    for i in range(cfg["runs"]):
        runs.append(_generate(pipe, cfg, cfg["seed"]))
    np.save(cfg["images_out"], runs[-1].images if runs else first.images)
    per_image = [r.timings["total_s"] / len(r.images) for r in runs]
    engines = {name: {"seconds_per_image": float(np.median([r.timings["engines"][name]["seconds"] / len(r.images)
                                                              for r in runs])),
                      "calls_per_run": runs[0].timings["engines"][name]["calls"]}
               for name in runs[0].timings["engines"]}
    precisions = {name: e.precision for name, e in pipe.engines.items()}
    memory = memory_report(pipe.engines)
    return {
        "load_s": load_s,
        "first_run_s": first.timings["total_s"],
        "seconds_per_image": {"median": float(np.median(per_image)), "p90": float(np.percentile(per_image, 90)),
                              "all": per_image},
        "images_per_second": float(1 / np.median(per_image)),
        "engines": engines,
        "outside_share": float(np.median([r.timings["outside_s"] / r.timings["total_s"] for r in runs])),
        "engine_sum_ratio": float(np.median([r.timings["total_s"] / r.timings["engine_s"] for r in runs])),
        "component_precision": precisions,
        "peak_rss_mb": peak_rss_mib(),
        "memory": pipe.memory.value,
        "largest_component": memory.component[0] if memory.component else None,
        "largest_component_mb": memory.component[1] / 2**20 if memory.component else None,
        "largest_stage": memory.stage[0] if memory.stage else None,
        "largest_stage_mb": memory.stage[1] / 2**20 if memory.stage else None,
        **({"decoders": _decoders(pipe, cfg, runs or [first])} if TINY in pipe.engines else {}),
    }


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    Path(cfg["result_out"]).write_text(json.dumps(measure(cfg)))


if __name__ == "__main__":
    main()
