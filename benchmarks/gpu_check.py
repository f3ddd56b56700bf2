"""On a machine with an NVIDIA GPU and TensorRT: build FP16 and INT8 engines for the small SD
pipeline and the shared checkpoints, check them against the FP32 CPU artifacts on the same
noise, print latency ratios, and save benchmarks/results/gpu_check.json.

    python benchmarks/gpu_check.py

Without TensorRT it says so and exits 0 (nothing to measure).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import HERE, random_sd_artifact, save_result

MODELS = HERE.parent.parent / "shared" / "models"


def _time(fn, runs=5):
    fn()
    t = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - t) / runs


def main() -> None:
    if importlib.util.find_spec("tensorrt") is None:
        print("TensorRT is not installed here: nothing to check (see docs/gpu.md)")
        return
    from edgegen import Pipeline
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import ModuleExportOptions, export_module, export_stable_diffusion
    from edgegen.compile import compile
    from edgegen.runtimes.tensorrt import device_info

    print(f"device: {device_info()}")
    results = {"device": vars(device_info())}
    with tempfile.TemporaryDirectory() as work:
        random_sd_artifact("small")
        sd = export_stable_diffusion(HERE / ".cache" / "sd-small-src", Path(work) / "sd",
                                     int8=Int8Options(backend="onnxruntime", samples=2, steps=10, gate_samples=1, force=True))
        gan_dir = MODELS / "mnist-gan-mlp"
        gan = export_module(f"{gan_dir}/model.py:load", Path(work) / "gan", kind="generator",
                            weights=gan_dir / "generator.ckpt",
                            options=ModuleExportOptions(latent_shape=(64,), image_shape=(1, 28, 28)),
                            int8=Int8Options(backend="onnxruntime", force=True))
        ddpm_dir = MODELS / "ddpm-mnist"
        ddpm = export_module(f"{ddpm_dir}/model.py:load", Path(work) / "ddpm", kind="unet", weights=ddpm_dir / "ddpm_mnist.pt",
                             options=ModuleExportOptions(sample_shape=(1, 28, 28), scheduler_config=ddpm_dir / "scheduler_config.json"),
                             int8=Int8Options(backend="onnxruntime", steps=50, force=True))
        # engines are built ahead (`edgegen compile`); the GAN's accept 64 latents per call
        compile(sd, precisions=["fp16", "int8"])
        compile(gan, precisions=["fp16", "int8"], opt=(28, 28, 64))
        compile(ddpm, precisions=["fp32", "fp16", "int8"])
        noise = np.random.default_rng(0).standard_normal((1, 4, 32, 32), dtype=np.float32)
        reference = Pipeline.load(sd, backend="onnxruntime")
        ref = reference("a lighthouse", num_inference_steps=10, init_noise=noise)
        for precision in ("fp16", "int8"):
            pipe = Pipeline.load(sd, backend="tensorrt", precision=precision)
            got = pipe("a lighthouse", num_inference_steps=10, init_noise=noise)
            err = float(np.abs(got.images - ref.images).max())
            ratio = _time(lambda: reference("a", num_inference_steps=10)) / _time(lambda: pipe("a", num_inference_steps=10))
            results[f"sd_small_{precision}"] = {"max_abs_vs_cpu_fp32": err, "speedup_vs_ort_cpu": ratio}
            print(f"sd_small {precision}: max abs vs CPU FP32 {err:.4f}, speed-up vs ORT CPU {ratio:.1f}x")
        z = np.random.default_rng(1).standard_normal((64, 64), dtype=np.float32)
        gan_ref = Pipeline.load(gan, backend="onnxruntime")(latents=z).images
        for precision in ("fp16", "int8"):
            got = Pipeline.load(gan, backend="tensorrt", precision=precision)(latents=z).images
            psnr = float(10 * np.log10(1 / np.mean((got - gan_ref) ** 2)))
            results[f"gan_{precision}"] = {"psnr_db_vs_cpu_fp32": psnr}
            print(f"gan {precision}: PSNR vs CPU FP32 {psnr:.2f} dB")
        ddpm_ref = Pipeline.load(ddpm, backend="onnxruntime")
        ref = ddpm_ref(num_inference_steps=50, sampler="ddim", seed=0).images
        for precision in ("fp32", "fp16", "int8"):
            pipe = Pipeline.load(ddpm, backend="tensorrt", precision=precision)
            got = pipe(num_inference_steps=50, sampler="ddim", seed=0).images
            psnr = float(10 * np.log10(1 / np.mean((got - ref) ** 2)))
            ratio = (_time(lambda: ddpm_ref(num_inference_steps=50, sampler="ddim"))
                     / _time(lambda: pipe(num_inference_steps=50, sampler="ddim")))
            results[f"ddpm_{precision}"] = {"psnr_db_vs_cpu_fp32": psnr, "speedup_vs_ort_cpu": ratio}
            print(f"ddpm {precision}: PSNR vs CPU FP32 {psnr:.2f} dB, speed-up vs ORT CPU {ratio:.1f}x")
    print(f"results: {save_result('gpu_check', results)}")


if __name__ == "__main__":
    sys.exit(main())
