"""Hostile and careless input through the real CLI (issue 14 items 1, 6, 7 and the run part of 8).

Every case runs ``python -m edgegen ...`` in a subprocess (PYTHONPATH = this checkout) on small
artifacts exported here from tiny torch modules, and asserts what a user must see: a non-zero
exit, one line on stderr naming the offending flag or file, no ``Traceback``, and no PNG where
the result would be wrong. Engines are real (OpenVINO and ONNX Runtime).

The tiny models compute ``x * (1 + 1e-6 / (x0 - K))``: finite on the export's parity-gate inputs,
Inf/NaN where a chosen input hits K, which is how a NaN from inside an engine is provoked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["openvino", "onnxruntime"]
NAN_STEP_T = 601.0  # DDIM 'leading' timesteps at 10 steps: 901, 801, 701, 601 (step 4), ...

MODELS = textwrap.dedent(f"""
    import torch
    from torch import nn


    class Generator(nn.Module):  # z (B, 8) -> (B, 64); Inf where z[:, 0] == 3
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.lin = nn.Linear(8, 64)

        def forward(self, z):
            return torch.tanh(self.lin(z)) * (1 + 1e-6 / (z[:, :1] - 3.0))


    class Decoder(nn.Module):  # latents (B, 4, h, w) -> (B, 3, 8h, 8w)
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.up = nn.Upsample(scale_factor=8)
            self.conv = nn.Conv2d(4, 3, 3, padding=1)

        def forward(self, latents):
            return torch.tanh(self.conv(self.up(latents)))


    class UNet(nn.Module):  # Inf at timestep {NAN_STEP_T}
        def __init__(self, classes=0):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.emb = nn.Embedding(classes + 1, 1) if classes else None

        def forward(self, sample, timestep, class_labels=None):
            out = 0.1 * self.conv(sample) * (1 + 1e-6 / (timestep[:, None, None, None] - {NAN_STEP_T}))
            if self.emb is not None:
                out = out + self.emb(class_labels)[:, :, None, None]
            return out


    def generator():
        return Generator()


    def decoder():
        return Decoder()


    def unet():
        return UNet()


    def class_unet():
        return UNet(classes=3)


    def exits_at_import():
        return None
""")

SCHEDULER = {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
             "beta_schedule": "linear", "timestep_spacing": "leading", "steps_offset": 1,
             "prediction_type": "epsilon", "clip_sample": True}


@pytest.fixture(scope="module")
def arts(tmp_path_factory) -> dict[str, Path]:
    """Tiny artifacts of each family, exported with edgegen.export (parity-gated)."""
    from edgegen.export import ModuleExportOptions, export_module

    root = tmp_path_factory.mktemp("hostile")
    (root / "models.py").write_text(MODELS)
    (root / "scheduler.json").write_text(json.dumps(SCHEDULER))
    spec = f"{root / 'models.py'}:"
    out = {}
    for name, fn, kind, options in [
        ("generator", "generator", "generator", ModuleExportOptions(latent_shape=(8,), image_shape=(1, 8, 8))),
        ("vae", "decoder", "vae-decoder", ModuleExportOptions(latent_channels=4, scale_factor=8, height=32, width=32)),
        ("unet", "unet", "unet", ModuleExportOptions(sample_shape=(1, 8, 8), timestep_dtype="float32",
                                                     scheduler_config=root / "scheduler.json")),
        ("class-unet", "class_unet", "unet", ModuleExportOptions(sample_shape=(1, 8, 8), timestep_dtype="float32",
                                                                 scheduler_config=root / "scheduler.json",
                                                                 num_classes=3)),
    ]:
        out[name] = export_module(spec + fn, root / name, kind=kind, options=options)
    out["root"] = root
    return out


def cli(*args, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "edgegen", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def refused(result: subprocess.CompletedProcess, *names: str) -> str:
    """Non-zero exit, no traceback, one stderr line naming each of ``names``; returns that line."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def pngs(path: Path) -> list[Path]:
    return sorted(path.glob("*.png")) if path.exists() else []


def save(path: Path, value) -> Path:
    np.save(path, value)
    return path


# --- item 1: NaN / Inf -------------------------------------------------------------------------

def model_file(component: str, backend: str) -> str:
    """The file an engine runs: OpenVINO loads the IR exported beside the ONNX."""
    return f"{component}.xml" if backend == "openvino" else f"{component}.onnx"


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_from_inside_the_unet_names_engine_step_and_tensor(arts, tmp_path, backend):
    line = refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--steps", "10", "--backend", backend),
                   model_file("unet", backend), f"({backend})", "at step 4/10", "output 'noise_pred'", "finite")
    assert "Inf" in line
    assert pngs(tmp_path / "o") == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_from_inside_the_generator(arts, tmp_path, backend):
    z = np.zeros((2, 8), np.float32)
    z[1, 0] = 3.0  # 1 / (3 - 3)
    refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--latents", save(tmp_path / "z.npy", z),
                "--backend", backend), model_file("generator", backend), "output", "finite")
    assert pngs(tmp_path / "o") == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_row_in_latents_is_refused_before_any_engine(arts, tmp_path, backend):
    """Today OpenVINO makes a plausible digit of it and ONNX Runtime a NaN image."""
    z = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    z[1] = np.nan
    line = refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--latents", save(tmp_path / "z.npy", z),
                       "--backend", backend), "--latents", "8 NaN", "(1, 0)")
    assert "engine" not in line
    assert pngs(tmp_path / "o") == []


def test_schedule_that_goes_nonfinite(arts, tmp_path):
    """beta_end 2.0 makes alphas_cumprod negative: refused when the schedule is read, or at the
    latest where the first NaN reaches an engine; never a black PNG."""
    from edgegen.errors import EdgegenError
    from edgegen.export import ModuleExportOptions, export_module

    (tmp_path / "s.json").write_text(json.dumps({**SCHEDULER, "beta_end": 2.0}))
    try:
        art = export_module(f"{arts['root'] / 'models.py'}:unet", tmp_path / "a", kind="unet", options=ModuleExportOptions(
            sample_shape=(1, 8, 8), timestep_dtype="float32", scheduler_config=tmp_path / "s.json"))
    except EdgegenError as exc:  # refused at export: the schedule check came first
        assert "beta" in str(exc)
        return
    line = refused(cli("run", art, "--out", tmp_path / "o", "--steps", "3"))
    assert "beta" in line or "finite" in line
    assert pngs(tmp_path / "o") == []


def test_output_range_that_divides_by_zero(arts, tmp_path):
    """output_range [1, 1] would map every image through (x - 1) / 0."""
    import shutil

    art = Path(shutil.copytree(arts["generator"], tmp_path / "a"))
    manifest = json.loads((art / "edgegen.json").read_text())
    manifest["image"]["output_range"] = [1, 1]
    (art / "edgegen.json").write_text(json.dumps(manifest))
    refused(cli("run", art, "--out", tmp_path / "o"), "output_range")
    assert pngs(tmp_path / "o") == []


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nonfinite_init_noise(arts, tmp_path, value):
    noise = np.zeros((1, 1, 8, 8), np.float32)
    noise[0, 0, 2, 3] = value
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--steps", "3", "--init-noise",
                save(tmp_path / "n.npy", noise)), "--init-noise", "(0, 0, 2, 3)")


SLOW = pytest.mark.slow  # more of a class already covered by the default run


@pytest.mark.parametrize("flag,value", [("--eta", "nan"), ("--eta", "-1"), pytest.param("--eta", "inf", marks=SLOW),
                                        ("--guidance-scale", "nan"), pytest.param("--guidance-scale", "inf", marks=SLOW)])
def test_nonfinite_or_negative_scalars(arts, tmp_path, flag, value):
    refused(cli("run", arts["class-unet"], "--out", tmp_path / "o", "--steps", "3", flag, value), flag, value)


# --- item 6 and 8: options checked up front ----------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-8", "36"])
def test_bad_height_for_the_vae(arts, tmp_path, value):
    refused(cli("run", arts["vae"], "--out", tmp_path / "o", "--height", value), "--height", value)


def test_height_and_width_do_not_apply_to_fixed_size_models(arts, tmp_path):
    refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--height", "64"), "--height", "generator")
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--width", "64"), "--width", "U-Net")


@pytest.mark.parametrize("args,flag", [(["--steps", "5"], "--steps"), (["--sampler", "ddim"], "--sampler"),
                                       (["--prompt", "a cat"], "--prompt"),
                                       pytest.param(["--eta", "0.5"], "--eta", marks=SLOW),
                                       pytest.param(["--guidance-scale", "3"], "--guidance-scale", marks=SLOW)])
def test_diffusion_options_on_a_generator_are_refused(arts, tmp_path, args, flag):
    refused(cli("run", arts["generator"], "--out", tmp_path / "o", *args), flag, "does not apply", "generator")


def test_options_that_do_not_apply_to_unets(arts, tmp_path):
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--prompt", "7"), "--prompt", "unconditional")
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--latents", save(tmp_path / "z.npy", np.zeros((1, 8)))),
            "--latents")
    refused(cli("run", arts["class-unet"], "--out", tmp_path / "o", "--negative-prompt", "x"), "--negative-prompt")
    refused(cli("run", arts["class-unet"], "--out", tmp_path / "o", "--class-label", "3"), "--class-label", "0..2")


@pytest.mark.parametrize("args,flag", [(["--guidance-interval", "-1,0.5"], "--guidance-interval"),
                                       (["--prompt", "9"], "--prompt")])
def test_class_unet_values_name_the_flag(arts, tmp_path, args, flag):
    line = refused(cli("run", arts["class-unet"], "--out", tmp_path / "o", "--steps", "3", *args), flag)
    assert "guidance_interval" not in line


def test_precision_int8_without_int8_variants(arts, tmp_path):
    refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--precision", "int8"), "--precision int8",
            "no INT8 variant", "--int8")


def test_num_images_conflicts_with_init_noise_batch(arts, tmp_path):
    noise = save(tmp_path / "n.npy", np.zeros((1, 1, 8, 8), np.float32))
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--num-images", "3", "--init-noise", noise),
            "--num-images 3", "--init-noise", "1 image")


@pytest.mark.parametrize("value", ["1000000000000", "0"])
def test_absurd_num_images(arts, tmp_path, value):
    refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--num-images", value), "--num-images", value)


def test_steps_out_of_range_names_the_flag(arts, tmp_path):
    line = refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--steps", "0"), "--steps")
    assert "num_inference_steps" not in line


def test_non_utf8_prompt(arts, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "edgegen", "run", str(arts["class-unet"]), "--out",
                             str(tmp_path / "o"), "--prompt", b"\xff\xfe7"], capture_output=True, text=True, env=env)
    refused(result, "--prompt", "UTF-8")


def test_out_is_a_file(arts, tmp_path):
    (tmp_path / "f").write_text("x")
    refused(cli("run", arts["generator"], "--out", tmp_path / "f"), "--out", "file")


# --- item 6 / 7: array files -------------------------------------------------------------------

@pytest.mark.parametrize("case", ["int32", "complex", "empty", "npz", "zero-byte", "text", "wrong-shape",
                                  pytest.param("1d", marks=SLOW)])
def test_bad_latents_files(arts, tmp_path, case):
    path = tmp_path / "z.npy"
    if case == "int32":
        save(path, np.zeros((2, 8), np.int32))
    elif case == "complex":
        save(path, np.zeros((2, 8), np.complex64))
    elif case == "empty":
        save(path, np.zeros((0, 8), np.float32))
    elif case == "npz":
        np.savez(tmp_path / "z.npz", z=np.zeros((2, 8), np.float32))
        path = tmp_path / "z.npz"
    elif case == "zero-byte":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("0.1 0.2 0.3\n")
    elif case == "wrong-shape":
        save(path, np.zeros((2, 9), np.float32))
    else:
        save(path, np.zeros(8, np.float32))
    line = refused(cli("run", arts["generator"], "--out", tmp_path / "o", "--latents", path), "--latents")
    assert "Aborted" not in line and "could not convert" not in line
    assert pngs(tmp_path / "o") == []


def test_npz_init_noise_says_npz(arts, tmp_path):
    np.savez(tmp_path / "n.npz", a=np.zeros((1, 1, 8, 8), np.float32))
    refused(cli("run", arts["unet"], "--out", tmp_path / "o", "--init-noise", tmp_path / "n.npz"), "--init-noise", ".npz")


def test_good_runs_still_write_images(arts, tmp_path):
    """The checks refuse bad input only: these runs succeed on both backends."""
    for backend in BACKENDS:
        assert cli("run", arts["generator"], "--out", tmp_path / backend, "--num-images", "3", "--backend",
                   backend).returncode == 0
        assert len(pngs(tmp_path / backend)) == 3
    z = save(tmp_path / "z.npy", np.zeros((2, 4, 2, 3), np.float32))
    result = cli("run", arts["vae"], "--out", tmp_path / "vae", "--latents", z)
    assert result.returncode == 0, result.stderr
    assert len(pngs(tmp_path / "vae")) == 2
    result = cli("run", arts["class-unet"], "--out", tmp_path / "cu", "--steps", "3", "--class-label", "2")
    assert result.returncode == 0, result.stderr


# --- item 7: export messages that mislead ------------------------------------------------------

def test_text_file_as_checkpoint_is_not_called_a_pickle(arts, tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_text("these are not weights\n")
    line = refused(cli("export", "--module", f"{arts['root'] / 'models.py'}:generator", "--kind", "generator",
                       "--latent-shape", "8", "--image-shape", "1,8,8", "--weights", weights, "--out", tmp_path / "a"),
                   "weights.pt")
    assert "arbitrary code" not in line and "()" not in line


def test_zero_byte_checkpoint(arts, tmp_path):
    weights = tmp_path / "empty.pt"
    weights.write_bytes(b"")
    line = refused(cli("export", "--module", f"{arts['root'] / 'models.py'}:generator", "--kind", "generator",
                       "--latent-shape", "8", "--image-shape", "1,8,8", "--weights", weights, "--out", tmp_path / "a"),
                   "empty.pt", "empty")
    assert "()" not in line


def test_user_module_exiting_at_import(tmp_path):
    (tmp_path / "bye.py").write_text("import sys\nsys.exit(3)\n")
    refused(cli("export", "--module", f"{tmp_path / 'bye.py'}:make", "--kind", "generator", "--latent-shape", "8",
                "--image-shape", "1,8,8", "--out", tmp_path / "a"), "bye.py", "sys.exit(3)")
    assert not (tmp_path / "a").exists()


def test_wrong_image_shape_at_export(arts, tmp_path):
    refused(cli("export", "--module", f"{arts['root'] / 'models.py'}:generator", "--kind", "generator",
                "--latent-shape", "8", "--image-shape", "3,8,8", "--out", tmp_path / "a"), "--image-shape", "3,8,8")
    assert not (tmp_path / "a").exists()


# --- Stable Diffusion: sizes the U-Net cannot divide or the machine cannot hold ----------------

@pytest.fixture(scope="module")
def sd(tiny_sd_artifact) -> Path:
    return tiny_sd_artifact


@pytest.mark.slow
@pytest.mark.parametrize("args,names", [
    (["--height", "0"], ["--height", "0"]),
    (["--height", "63"], ["--height", "63", "multiple of 2"]),  # the tiny VAE's scale factor is 2
    (["--height", "62"], ["--height/--width", "62x32", "multiple of 4 px"]),  # latent 31: the U-Net needs even
    (["--height", "65536", "--width", "65536"], ["--height/--width", "GiB", "available"]),
    (["--height", "8192", "--width", "8192", "--backend", "onnxruntime"], ["--height/--width", "GiB", "available"]),
    ([], ["--prompt", "needs a prompt"]),
    (["--class-label", "1"], ["--class-label", "does not apply"]),
])
def test_sd_refusals(sd, tmp_path, args, names):
    prompt = [] if not args else ["--prompt", "a cat"]
    refused(cli("run", sd, "--out", tmp_path / "o", "--steps", "2", *prompt, *args), *names)
    assert pngs(tmp_path / "o") == []
