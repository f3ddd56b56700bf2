"""Full vs tiny VAE decoder: decode time and tiled-decode seam error, on the real architectures.

    python benchmarks/tiny_decoder.py [--preset sd15] [--size 256] [--runs 5]

``--preset sd15`` builds SD 1.5's AutoencoderKL and TAESD's AutoencoderTiny (diffusers' default
config is TAESD's layout) with random weights (tests/random_sd.py): decode time depends on the
architecture, not the weights. Both decoders are exported as edgegen exports them (the tiny one
with its ``input_scale``), run on OpenVINO FP32, one image, median of ``--runs`` after a warm-up.
Seam error: max / mean abs difference between a decode in tiles of ``size / 2`` px (1/4-tile
overlaps, :func:`edgegen.tiling.decode_tiled`) and the whole decode, images in [0, 1], on N(0, I)
latents; with random weights it only says how far each architecture's border effects reach. The
quality cost of the tiny decoder (PSNR vs the full one) needs trained weights: ``edgegen bench``
reports it for an artifact exported with ``--tiny-vae``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, save_result


def _export(preset: str, scratch: Path) -> dict[str, Path]:
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny
    from random_sd import PRESETS, TINY_VAE_PRESETS

    from edgegen.export.diffusers import _TinyVaeDecoder, _VaeDecoder
    from edgegen.export.onnx import ComponentSpec, export_component
    from edgegen.runtimes.base import TensorSpec

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **PRESETS[preset]["vae"]).eval()
    tiny = AutoencoderTiny(latent_channels=4, **TINY_VAE_PRESETS[preset]).eval()
    paths = {}
    for name, module in (("full", _VaeDecoder(vae)), ("tiny", _TinyVaeDecoder(tiny, vae.config.scaling_factor))):
        spec = ComponentSpec(name, (TensorSpec("latents", ("batch", 4, "latent_height", "latent_width"), "float32"),),
                             (TensorSpec("image", ("batch", 3, "height", "width"), "float32"),),
                             sizes={"batch": 1, "latent_height": 16, "latent_width": 16})
        paths[name] = scratch / f"{name}.onnx"
        export_component(module.eval(), spec, paths[name], atol=1e-3, rtol=1e-2, seed=0)
    return paths


def _measure(path: Path, latents: np.ndarray, runs: int, tile: int, f: int) -> dict:
    from edgegen.images import to_unit_range
    from edgegen.runtimes import load_engine
    from edgegen.tiling import decode_tiled

    engine = load_engine(path, "openvino")
    decode = lambda x: engine({"latents": x})["image"]  # noqa: E731
    whole = decode(latents)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        decode(latents)
        seconds.append(time.perf_counter() - start)
    tiled = decode_tiled(decode, latents, tile_size=tile, scale_factor=f)
    error = np.abs(to_unit_range(tiled, (-1.0, 1.0)) - to_unit_range(whole, (-1.0, 1.0)))
    return {"decode_s_median": float(np.median(seconds)), "decode_s_all": seconds,
            "seam_max_abs": float(error.max()), "seam_mean_abs": float(error.mean())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="sd15", choices=("tiny", "small", "sd15"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    f = 2 if args.preset == "tiny" else 8
    latents = np.random.default_rng(0).standard_normal((1, 4, args.size // f, args.size // f), dtype=np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        paths = _export(args.preset, Path(scratch))
        rows = {name: _measure(path, latents, args.runs, args.size // 2, f) for name, path in paths.items()}
    result = {"preset": args.preset, "size": args.size, "tile_size": args.size // 2, "backend": "openvino fp32",
              **rows, "decode_speedup": rows["full"]["decode_s_median"] / rows["tiny"]["decode_s_median"],
              "machine": machine()}
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print("wrote", save_result("tiny_decoder", result))


if __name__ == "__main__":
    main()
