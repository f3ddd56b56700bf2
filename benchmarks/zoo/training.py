"""Train edgegen's bundled digit models (the weights in edgegen/zoo/) on scikit-learn's digits.

Data: ``sklearn.datasets.load_digits`` — 1,797 real 8x8 scans of handwritten digits (values
0..16) — upsampled bilinearly to 32x32 and scaled to [-1, 1]. A seeded 80/20 split: the
generators and the classifier train on the first part; the classifier is scored on the second.
The model definitions live in the package (``edgegen.export.zoo``), which exports the trained
weights; training needs torch and diffusers (the export extra) and is not part of edgegen.

Recipes (all seeded, CPU, minutes each on 2 cores):
* ``cond_unet``: class embeddings (10 digits + a null class for classifier-free guidance, label
  dropout 0.5), eps-prediction, DDPM linear schedule T=1000. The high label dropout and short
  training keep the conditional branch alone (w=1) near 85%, so guidance visibly matters
  (figures: edgegen/zoo/MODEL_CARDS.md).
* ``dcgan``: trained against a small convolutional discriminator (non-saturating loss).
* ``vae``: a convolutional VAE (16-d latent); its decoder is exported on its own.
* ``classifier``: a small CNN for the quality metric (accuracy on the held-out split).

Weights are saved as safetensors with a JSON model card each (data split, seed,
hyper-parameters, final losses, measured quality).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgegen.atomic import atomic_path, write_text_atomic  # noqa: E402
from edgegen.export.zoo import (NULL_CLASS, SCHEDULER_CONFIG, VaeDecoder, classifier, cond_unet,  # noqa: E402
                                dcgan_generator)


def digits(seed: int = 0) -> dict:
    """The 32x32 digits in [-1, 1] with a seeded 80/20 split: {'train': (x, y), 'test': (x, y), 'split': ...}."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp(0, 1) * 2 - 1
    y = torch.from_numpy(data.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    cut = int(0.8 * len(y))
    return {"train": (x[order[:cut]], y[order[:cut]]), "test": (x[order[cut:]], y[order[cut:]]),
            "split": {"seed": seed, "train": cut, "test": len(y) - cut, "source": "sklearn.datasets.load_digits"}}


def _discriminator(width: int = 32) -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(width, width * 2, 4, 2, 1), nn.BatchNorm2d(width * 2), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(width * 2, width * 4, 4, 2, 1), nn.BatchNorm2d(width * 4), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(width * 4, 1, 4, 1, 0), nn.Flatten())


class _VaeEncoder(nn.Module):
    def __init__(self, z_dim: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                 nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 16, 2 * z_dim))

    def forward(self, x):
        return self.net(x).chunk(2, dim=1)


def _batches(n: int, batch: int, gen: torch.Generator):
    while True:
        yield torch.randperm(n, generator=gen)[:batch]


def train_cond_unet(data, *, steps: int, seed: int, batch: int = 48, lr: float = 2e-3, p_uncond: float = 0.5):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = cond_unet()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    acp = torch.cumprod(1 - betas, 0).float()
    x_all, y_all = data["train"]
    losses = []
    for _, idx in zip(range(steps), _batches(len(y_all), batch, gen)):
        x0, y = x_all[idx], y_all[idx].clone()
        y[torch.rand(len(y), generator=gen) < p_uncond] = NULL_CLASS
        t = torch.randint(0, 1000, (len(y),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = acp[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(net(a.sqrt() * x0 + (1 - a).sqrt() * noise, t, class_labels=y).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    return net.eval(), {"steps": steps, "batch": batch, "lr": lr, "p_uncond": p_uncond, "optimizer": "AdamW+OneCycle",
                        "final_loss": float(np.mean(losses[-100:]))}


def train_dcgan(data, *, steps: int, seed: int, batch: int = 64, lr: float = 2e-4):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    g, d = dcgan_generator(), _discriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    x_all, _ = data["train"]
    g_losses, d_losses = [], []
    for _, idx in zip(range(steps), _batches(len(x_all), batch, gen)):
        real = x_all[idx]
        fake = g(torch.randn(len(idx), 64, generator=gen))
        d_loss = F.softplus(-d(real)).mean() + F.softplus(d(fake.detach())).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = F.softplus(-d(fake)).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        g_losses.append(g_loss.item())
        d_losses.append(d_loss.item())
    return g.eval(), {"steps": steps, "batch": batch, "lr": lr, "optimizer": "Adam(0.5, 0.999)",
                      "final_g_loss": float(np.mean(g_losses[-100:])), "final_d_loss": float(np.mean(d_losses[-100:]))}


def train_vae(data, *, steps: int, seed: int, batch: int = 64, lr: float = 2e-3, beta: float = 1.0):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    enc, dec = _VaeEncoder(), VaeDecoder()
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=lr)
    x_all, _ = data["train"]
    losses = []
    for _, idx in zip(range(steps), _batches(len(x_all), batch, gen)):
        x = (x_all[idx] + 1) / 2
        mu, logvar = enc(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=gen)
        rec = F.binary_cross_entropy(dec(z), x, reduction="sum") / len(x)
        kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum() / len(x)
        loss = rec + beta * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return dec.eval(), {"steps": steps, "batch": batch, "lr": lr, "beta": beta, "latent_dim": 16,
                        "final_loss": float(np.mean(losses[-100:]))}


def train_classifier(data, *, steps: int, seed: int, batch: int = 64, lr: float = 2e-3):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = classifier()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all, y_all = data["train"]
    losses = []
    for _, idx in zip(range(steps), _batches(len(y_all), batch, gen)):
        x = (x_all[idx] + 1) / 2
        # light augmentation: one-pixel shifts, so generated digits need not sit exactly centred
        x = torch.roll(x, shifts=(int(torch.randint(-2, 3, (1,), generator=gen)), int(torch.randint(-2, 3, (1,), generator=gen))), dims=(2, 3))
        loss = F.cross_entropy(net(x), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    net.eval()
    x_test, y_test = data["test"]
    with torch.no_grad():
        accuracy = float((net((x_test + 1) / 2).argmax(1) == y_test).float().mean())
    return net, {"steps": steps, "batch": batch, "lr": lr, "final_loss": float(np.mean(losses[-100:])),
                 "test_accuracy": accuracy}


STEPS = {"cond_unet": 1500, "dcgan": 2000, "vae": 4000, "classifier": 1500}


def train_all(out: str | Path, *, seed: int = 0, steps: dict | None = None, only: tuple[str, ...] | None = None,
              progress: Callable[[str], None] | None = None) -> dict:
    """Train the four models (or those named in ``only``) and save ``<name>.safetensors`` + ``<name>.json``
    (model card) in ``out``. Raises ValueError for a name not in ``STEPS``."""
    from safetensors.torch import save_file

    say = progress or (lambda _message: None)
    steps = {**STEPS, **(steps or {})}
    unknown = sorted(set(only or ()) - set(STEPS))
    if unknown:
        raise ValueError(f"unknown zoo model(s) {unknown}; expected some of {sorted(STEPS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = digits(seed)
    cards = {}
    for name, fn in (("classifier", train_classifier), ("vae", train_vae), ("dcgan", train_dcgan),
                     ("cond_unet", train_cond_unet)):
        if only and name not in only:
            continue
        start = time.perf_counter()
        say(f"training {name} ({steps[name]} steps)")
        net, card = fn(data, steps=steps[name], seed=seed)
        card.update(seconds=time.perf_counter() - start, seed=seed, data=data["split"], torch=torch.__version__,
                    threads=torch.get_num_threads())
        with atomic_path(out / f"{name}.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
        if name == "cond_unet":
            card["scheduler_config"] = SCHEDULER_CONFIG
        write_text_atomic(out / f"{name}.json", json.dumps(card, indent=2) + "\n")
        cards[name] = card
        say(f"  {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in card.items() if isinstance(v, float)))
    return cards
