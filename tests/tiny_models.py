"""Tiny random-init torch models (seeded) and their edgegen artifacts, one per family but SD.

This file is also the ``--module`` the exports load (``tiny_models.py:generator`` ...): torch is
imported inside the factories so that importing it costs nothing. SD comes from conftest's
``tiny_sd_artifact``.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve()
SCHEDULER = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
             "beta_schedule": "linear", "prediction_type": "epsilon", "clip_sample": True}


def generator(weights=None):
    """z (B, 8) -> (B, 64) in [-1, 1], reshaped by the export to (B, 1, 8, 8)."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh())


def decoder(weights=None):
    """latents (B, 2, h, w) -> image (B, 3, 2h, 2w) in [-1, 1]."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Tanh())


def unet(weights=None, num_classes: int | None = None):
    """sample (B, 1, 8, 8), timestep (B,)[, class_labels (B,)] -> noise_pred (B, 1, 8, 8)."""
    import torch

    class TinyUNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)
            self.embed = torch.nn.Embedding((num_classes or 0) + 1, 1)

        def forward(self, sample, timestep, class_labels=None):
            t = (timestep.float() / 1000.0).reshape(-1, 1, 1, 1)
            out = self.conv(sample) * (1 + t)
            if class_labels is not None:
                out = out + self.embed(class_labels).reshape(-1, 1, 1, 1)
            return out

    torch.manual_seed(0)
    return TinyUNet()


def class_unet(weights=None):
    return unet(weights, num_classes=3)


def export_tiny(family: str, out: Path, *, int8: bool = False) -> Path:
    """Export the tiny model of ``family`` ("generator", "vae-decoder", "unet", "class-unet") to ``out``.

    ``int8`` adds an ONNX Runtime QDQ variant kept whatever its speed (gates set to pass).
    """
    from edgegen.calibration.int8 import Int8Options
    from edgegen.export import ModuleExportOptions, export_module

    config = out.parent / f"{out.name}.scheduler_config.json"
    if family.endswith("unet"):
        config.write_text(json.dumps(SCHEDULER))
    kind, fn, options = {
        "generator": ("generator", "generator", ModuleExportOptions(latent_shape=(8,), image_shape=(1, 8, 8))),
        "vae-decoder": ("vae-decoder", "decoder", ModuleExportOptions(latent_channels=2, scale_factor=2, height=8,
                                                                      width=8, scaling_factor=0.5)),
        "unet": ("unet", "unet", ModuleExportOptions(sample_shape=(1, 8, 8), scheduler_config=config)),
        "class-unet": ("unet", "class_unet", ModuleExportOptions(sample_shape=(1, 8, 8), scheduler_config=config,
                                                                 num_classes=3, guidance_interval=(0.0, 2.0))),
    }[family]
    quantize = Int8Options(backend="onnxruntime", samples=8, gate_samples=2, min_psnr=0.0, min_ssim=-1.0,
                           max_step_error=1e9, steps=2, force=True) if int8 else None
    return export_module(f"{HERE}:{fn}", out, kind=kind, options=options, int8=quantize)
