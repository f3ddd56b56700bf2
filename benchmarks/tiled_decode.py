"""Tiled vs untiled TAEF2 decode at 1024x1024: peak RSS of each (fresh processes) and the seam error,
and the tile automatic tiling picks under a memory budget.

    python benchmarks/tiled_decode.py [--size 1024] [--tile 512] [--budget-mib 600]

Latents: TAEF2's encoding of the shared photo's 768x768 centre crop resized to --size (PyTorch,
the export extra). Each decode runs in its own process (OpenVINO FP32, one image), which reports
its peak RSS (VmHWM, :func:`edgegen.bench.worker.peak_rss_mib`) after loading the pipeline and
after decoding. Seam error: max / mean abs difference of the tiled vs untiled images in [0, 1].
The third decode gives no tile size and ``memory_budget=--budget-mib``: the pipeline picks the tile
(:mod:`edgegen.pipelines.budget`) and says why in ``info``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from common import CACHE, HERE, json_child, save_result

MODELS = HERE.parent.parent / "shared" / "models" / "taef2"
CHILD = """
import json, sys, time, numpy as np
from edgegen import Pipeline
from edgegen.bench.worker import peak_rss_mib
art, lat, out, tile, budget = sys.argv[1:6]
pipe = Pipeline.load(art, backend="openvino", memory_budget=int(budget) << 20 if int(budget) else 1 << 50)
loaded = peak_rss_mib()
start = time.perf_counter()
result = pipe(latents=np.load(lat), tile_size=int(tile) or None)
seconds = time.perf_counter() - start
np.save(out, result.images)
print(json.dumps({"peak_rss_after_load_mib": loaded, "peak_rss_mib": peak_rss_mib(), "decode_s": seconds,
                  "tile_size": result.info.get("tile_size"), "tile_reason": result.info.get("tile_reason")}))
"""


def _latents(size: int, path) -> None:
    import torch
    from PIL import Image

    sys.path.insert(0, str(MODELS))
    import model  # the checkpoint's own module

    photo = Image.open(MODELS / "photo.jpg").convert("RGB").crop((640, 0, 1408, 768)).resize((size, size))
    x = torch.from_numpy(np.asarray(photo, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        np.save(path, model.load_encoder(str(MODELS / "taef2_encoder.pth"))(x).numpy())


def _decode(art, lat, out, tile: int, budget_mib: int = 0) -> dict:
    return json_child(["-c", CHILD, str(art), str(lat), str(out), str(tile), str(budget_mib)], timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--budget-mib", type=int, default=600, help="process RSS budget of the automatic decode")
    args = parser.parse_args()
    art, lat = CACHE / "taef2", CACHE / f"taef2-latents-{args.size}.npy"
    if not art.exists():
        subprocess.run([sys.executable, "-m", "edgegen", "export", "--module", f"{MODELS}/model.py:load_decoder",
                        "--weights", str(MODELS / "taef2_decoder.pth"), "--kind", "vae-decoder", "--latent-channels",
                        "32", "--output-range", "0,1", "--out", str(art)], check=True)
    if not lat.exists():
        _latents(args.size, lat)
    whole = _decode(art, lat, CACHE / "whole.npy", 0)
    tiled = _decode(art, lat, CACHE / "tiled.npy", args.tile)
    auto = _decode(art, lat, CACHE / "auto.npy", 0, args.budget_mib)
    error = np.abs(np.load(CACHE / "tiled.npy") - np.load(CACHE / "whole.npy"))
    auto_error = np.abs(np.load(CACHE / "auto.npy") - np.load(CACHE / "whole.npy"))
    result = {"size": args.size, "tile_size": args.tile, "overlap_px": round(args.tile / 4), "untiled": whole,
              "tiled": tiled, "seam_max_abs": float(error.max()), "seam_mean_abs": float(error.mean()),
              "auto": {**auto, "budget_mib": args.budget_mib, "seam_max_abs": float(auto_error.max()),
                       "seam_mean_abs": float(auto_error.mean())}}
    print(json.dumps(result, indent=2))
    print("wrote", save_result("tiled_decode", result))


if __name__ == "__main__":
    main()
