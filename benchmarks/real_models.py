"""The real_models suite: the trained checkpoints in ../shared/models, FP32 vs INT8 quality and speed.

    python benchmarks/real_models.py

* TAEF2 decoder, OpenVINO: PSNR against the held-out photo (FP32 vs INT8; goal: lose <= 0.3 dB)
  and decoder latency on the photo's latents (goal: INT8 >= 1.8x faster), measured side by side.
  Calibration: TAEF2 latents of photos shipped with scikit-image / scikit-learn.
* MNIST GAN generator: median PSNR INT8 vs FP32 and LeNet confidence over 512 samples.
* DDPM-MNIST U-Net: LeNet confidence FP32 vs INT8 (DDIM 50 steps, 256 samples, same noise).
LeNet runs in PyTorch here (benchmarks may use the export extra).
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import HERE, save_result

MODELS = HERE.parent.parent / "shared" / "models"


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.parent.name.replace("-", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lenet_confidence(images: np.ndarray) -> float:
    import torch
    import torch.nn.functional as F

    net = _module(MODELS / "lenet-mnist" / "model.py").load(str(MODELS / "lenet-mnist" / "lenet.pth"))
    x = F.interpolate(torch.from_numpy(images.reshape(-1, 1, 28, 28).astype(np.float32)), size=(32, 32), mode="bilinear")
    with torch.no_grad():
        return float(net(x).exp().max(1).values.mean())


def timed(fn, runs=5):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def taef2(work: Path) -> dict:
    import skimage.data
    import torch
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from edgegen import Pipeline
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import ModuleExportOptions, export_module

    d = MODELS / "taef2"
    encoder = _module(d / "model.py").load_encoder(str(d / "taef2_encoder.pth"))
    cal = work / "taef2-cal"
    cal.mkdir()
    images = [getattr(skimage.data, n)()[..., :3] for n in ("astronaut", "coffee", "chelsea", "rocket")]
    for i, image in enumerate(images + list(load_sample_images().images)):
        x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            np.save(cal / f"{i:02d}.npy", encoder(x[:, :, : x.shape[2] // 8 * 8, : x.shape[3] // 8 * 8]).numpy())
    art = export_module(f"{d}/model.py:load_decoder", work / "taef2", kind="vae-decoder",
                        weights=d / "taef2_decoder.pth",
                        options=ModuleExportOptions(latent_channels=32, output_range=(0, 1)),
                        int8=Int8Options(calibration_data=cal, min_psnr=40, force=True))
    photo = np.asarray(Image.open(d / "photo.jpg").convert("RGB"), np.float32) / 255
    with torch.no_grad():
        latents = encoder(torch.from_numpy(photo).permute(2, 0, 1)[None]).numpy()
    out = {}
    for precision in ("fp32", "int8"):
        pipe = Pipeline.load(art, backend="openvino", precision=precision)
        image = pipe(latents=latents).images[0]
        out[precision] = {"psnr_db": float(10 * np.log10(1 / np.mean((image - photo) ** 2))),
                          "seconds": timed(lambda: pipe(latents=latents))}
    out["psnr_loss_db"] = out["fp32"]["psnr_db"] - out["int8"]["psnr_db"]
    out["speedup"] = out["fp32"]["seconds"] / out["int8"]["seconds"]
    print(f"TAEF2 decoder (OpenVINO, 2048x768): PSNR FP32 {out['fp32']['psnr_db']:.2f} dB, INT8 "
          f"{out['int8']['psnr_db']:.2f} dB (loss {out['psnr_loss_db']:.3f} dB, goal <= 0.3); "
          f"latency FP32 {out['fp32']['seconds']:.3f} s, INT8 {out['int8']['seconds']:.3f} s, "
          f"speed-up {out['speedup']:.2f}x (goal >= 1.8x)")
    return out


def gan(work: Path) -> dict:
    from edgegen import Pipeline
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import ModuleExportOptions, export_module

    d = MODELS / "mnist-gan-mlp"
    art = export_module(f"{d}/model.py:load", work / "gan", kind="generator", weights=d / "generator.ckpt",
                        options=ModuleExportOptions(latent_shape=(64,), image_shape=(1, 28, 28)),
                        int8=Int8Options(force=True))
    z = np.random.default_rng(7).standard_normal((512, 64), dtype=np.float32)
    fp32, int8 = (Pipeline.load(art, precision=p) for p in ("fp32", "int8"))
    a, b = fp32(latents=z).images, int8(latents=z).images
    psnr = 10 * np.log10(1 / np.mean((a - b) ** 2, axis=(1, 2, 3)))
    out = {"median_psnr_db": float(np.median(psnr)), "lenet_fp32": lenet_confidence(a), "lenet_int8": lenet_confidence(b),
           "seconds_fp32": timed(lambda: fp32(latents=z)), "seconds_int8": timed(lambda: int8(latents=z))}
    print(f"GAN generator: median PSNR INT8 vs FP32 {out['median_psnr_db']:.2f} dB (goal >= 35); LeNet "
          f"{out['lenet_fp32']:.4f} vs {out['lenet_int8']:.4f} (goal within 0.01); 512 images FP32 "
          f"{1000 * out['seconds_fp32']:.1f} ms, INT8 {1000 * out['seconds_int8']:.1f} ms")
    return out


def ddpm(work: Path) -> dict:
    from edgegen import Pipeline
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import ModuleExportOptions, export_module

    d = MODELS / "ddpm-mnist"
    art = export_module(f"{d}/model.py:load", work / "ddpm", kind="unet", weights=d / "ddpm_mnist.pt",
                        options=ModuleExportOptions(sample_shape=(1, 28, 28), scheduler_config=d / "scheduler_config.json"),
                        int8=Int8Options(steps=50, force=True))
    out = {}
    for precision in ("fp32", "int8"):
        pipe = Pipeline.load(art, precision=precision)
        t = time.perf_counter()
        images = pipe(num_inference_steps=50, sampler="ddim", num_images=256, seed=0).images
        out[precision] = {"lenet": lenet_confidence(images), "seconds": time.perf_counter() - t}
    print(f"DDPM U-Net (DDIM 50, 256 samples): LeNet FP32 {out['fp32']['lenet']:.4f}, INT8 {out['int8']['lenet']:.4f} "
          f"(goal within 0.02); time FP32 {out['fp32']['seconds']:.2f} s, INT8 {out['int8']['seconds']:.2f} s")
    return out


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    with tempfile.TemporaryDirectory() as work:
        results = {"taef2": taef2(Path(work)), "gan": gan(Path(work)), "ddpm": ddpm(Path(work))}
    print(f"results: {save_result('real_models', results)}")


if __name__ == "__main__":
    main()
