"""The bundled model zoo's definitions: small generators trained by edgegen on real data
(scikit-learn digits), loaded from ``edgegen/zoo/*.safetensors`` for export.

Training (data, loops, model cards) lives outside the package, in ``benchmarks/zoo/training.py``
(``python benchmarks/zoo/train.py``). Models:
* ``cond_unet``: diffusers ``UNet2DModel`` with class embeddings (10 digits + a null class for
  classifier-free guidance, label dropout 0.5), eps-prediction, DDPM linear schedule T=1000,
  sampled with the x0 prediction clipped to [-2, 2] (``clip_sample_range``): clipping to the data
  range [-1, 1] breaks guidance at high noise (w=3 then puts 85% of samples in the requested class
  even when applied only below sigma 1.25), no clipping leaves noise speckle in some samples.
  The high label dropout and short training keep the conditional branch alone (w=1) near 85%, so
  guidance visibly matters (figures: MODEL_CARDS.md).
* ``dcgan``: the DCGAN generator stack (ConvTranspose / BatchNorm / ReLU / Tanh), z 64-d,
  trained against a small convolutional discriminator (non-saturating loss).
* ``vae``: a convolutional VAE (16-d latent); its decoder is exported on its own.
* ``classifier``: a small CNN for the quality metric (accuracy on the held-out split).

Weights are safetensors with a JSON model card each (data split, seed, hyper-parameters, final
losses, measured quality).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

NULL_CLASS = 10
SCHEDULER_CONFIG = {"_class_name": "DDPMScheduler", "num_train_timesteps": 1000, "beta_schedule": "linear",
                    "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": "epsilon", "clip_sample": True,
                    "clip_sample_range": 2.0, "variance_type": "fixed_small", "timestep_spacing": "leading",
                    "steps_offset": 0}


def cond_unet() -> nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(32, 48, 64),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       attention_head_dim=16, num_class_embeds=NULL_CLASS + 1)


class CondUNet(nn.Module):
    """forward(sample, timestep, class_labels) -> eps; what edgegen exports."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, sample, timestep, class_labels):
        return self.net(sample, timestep, class_labels=class_labels, return_dict=False)[0]


def dcgan_generator(z_dim: int = 64, width: int = 32) -> nn.Module:
    """z (N, z_dim) -> (N, 1, 32, 32) in [-1, 1] (Radford et al. 2016, scaled down)."""
    return nn.Sequential(
        nn.Unflatten(1, (z_dim, 1, 1)),
        nn.ConvTranspose2d(z_dim, width * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(width * 4), nn.ReLU(True),
        nn.ConvTranspose2d(width * 4, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2), nn.ReLU(True),
        nn.ConvTranspose2d(width * 2, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
        nn.ConvTranspose2d(width, 1, 4, 2, 1, bias=False), nn.Tanh())


class VaeDecoder(nn.Module):
    """z (N, 16) -> (N, 1, 32, 32) in [0, 1]."""

    def __init__(self, z_dim: int = 16):
        super().__init__()
        self.fc = nn.Linear(z_dim, 64 * 4 * 4)
        self.net = nn.Sequential(nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
                                 nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, z):
        return self.net(self.fc(z))


def classifier() -> nn.Module:
    """(N, 1, 32, 32) in [0, 1] -> logits (N, 10); also what `features` (64-d) come from."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 10))


def _load(net: nn.Module, weights: str | Path) -> nn.Module:
    from safetensors.torch import load_file

    net.load_state_dict(load_file(str(weights)))
    return net.eval()


def load_cond_unet(weights: str | Path) -> nn.Module:
    """``forward(sample, timestep, class_labels)`` with the trained weights (for ``--module``)."""
    return CondUNet(_load(cond_unet(), weights)).eval()


def load_dcgan(weights: str | Path) -> nn.Module:
    return _load(dcgan_generator(), weights)


def load_vae_decoder(weights: str | Path) -> nn.Module:
    return _load(VaeDecoder(), weights)


class _ClassifierWithFeatures(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        features = self.net[:-1](images)
        return self.net[-1](features), features


def export_classifier(weights: str | Path, path: str | Path) -> Path:
    """The digit classifier as ONNX: images (N, 1, 32, 32) in [0, 1] -> logits (N, 10), features (N, 64)."""
    from .onnx import ComponentSpec, export_component
    from ..runtimes.base import TensorSpec

    spec = ComponentSpec("classifier", (TensorSpec("images", ("batch", 1, 32, 32), "float32"),),
                         (TensorSpec("logits", ("batch", 10), "float32"), TensorSpec("features", ("batch", 64), "float32")),
                         sizes={"batch": 4})
    export_component(_ClassifierWithFeatures(_load(classifier(), weights)), spec, Path(path))
    return Path(path)
