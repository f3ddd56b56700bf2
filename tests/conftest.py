"""Shared fixtures: real checkpoints from ../shared/models, and a tiny random-init SD pipeline."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared" / "models"

# edgegen's caches (sha256 of artifact files, OpenVINO compiled models) in one directory per test
# session, shared by its tests and the CLIs they start, never the user's ~/.cache/edgegen.
os.environ.setdefault("EDGEGEN_CACHE_DIR", tempfile.mkdtemp(prefix="edgegen-test-cache-"))


def shared(*parts: str) -> Path:
    """Path inside ../shared/models; skips the test when the checkpoints are not there."""
    path = MODELS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared checkpoints)")
    return path


def load_user_module(path: Path):
    spec = importlib.util.spec_from_file_location(f"user_{path.parent.name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lenet_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LeNet-5 (shared/models/lenet-mnist) on (B, 28, 28[, 1]) digits in [0, 1].

    Returns (confidence (B,), predicted class (B,)) — the max softmax probability and its argmax.
    """
    import torch
    import torch.nn.functional as F

    lenet = load_user_module(shared("lenet-mnist", "model.py")).load(str(shared("lenet-mnist", "lenet.pth")))
    x = torch.from_numpy(np.asarray(images, dtype=np.float32).reshape(-1, 1, 28, 28))
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        probs = lenet(x).exp()
    conf, cls = probs.max(dim=1)
    return conf.numpy(), cls.numpy()


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory) -> Path:
    """A tiny random-init diffusers StableDiffusionPipeline saved to disk (no downloads)."""
    pytest.importorskip("diffusers")
    from random_sd import build_random_sd

    return build_random_sd(tmp_path_factory.mktemp("sd") / "tiny-sd", "tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_sd_artifact(tiny_sd_dir, tmp_path_factory) -> Path:
    from edgegen.export import export_stable_diffusion

    return export_stable_diffusion(tiny_sd_dir, tmp_path_factory.mktemp("art") / "tiny-sd")


def reference_pipeline(cls, path: Path):
    """A diffusers pipeline class loaded from a local directory, quiet and without the safety checker:
    the reference our pipelines are compared with."""
    pipe = cls.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_cli(*args: str):
    """Invoke the CLI in-process (typer's CliRunner); returns the click Result."""
    from typer.testing import CliRunner

    from edgegen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


sys.path.insert(0, str(Path(__file__).parent))
