"""The runtime never imports torch: generating from an artifact, in a fresh interpreter."""

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import shared


@pytest.fixture(scope="module")
def gan_artifact(tmp_path_factory):
    pytest.importorskip("torch")
    from edgegen.export import ModuleExportOptions, export_module

    d = shared("mnist-gan-mlp")
    return export_module(f"{d}/model.py:load", tmp_path_factory.mktemp("a") / "gan", kind="generator",
                         weights=d / "generator.ckpt",
                         options=ModuleExportOptions(latent_shape=(64,), image_shape=(1, 28, 28)))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)


def test_python_api_leaves_torch_out_of_sys_modules(gan_artifact, tiny_sd_artifact):
    proc = _run(f"""
        import sys
        from edgegen import Pipeline
        for backend in ("openvino", "onnxruntime"):
            Pipeline.load({str(gan_artifact)!r}, backend=backend)(num_images=2)
            Pipeline.load({str(tiny_sd_artifact)!r}, backend=backend)("a cat", num_inference_steps=2, height=32, width=32)
        import edgegen.cli
        heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
        print("HEAVY", heavy)
        sys.exit(1 if heavy else 0)
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cli_run_works_with_torch_unimportable(tiny_sd_artifact, tmp_path):
    # sys.modules[name] = None makes any `import name` raise ImportError.
    proc = _run(f"""
        import sys
        for name in ("torch", "diffusers", "transformers"):
            sys.modules[name] = None
        from edgegen.cli import main
        sys.argv = ["edgegen", "run", {str(tiny_sd_artifact)!r}, "--prompt", "a cat", "--steps", "2",
                    "--height", "32", "--width", "32", "--out", {str(tmp_path / 'out')!r}]
        main()
    """)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


def _without_torch(tmp_path: Path) -> tuple[list[str], dict]:
    """A Python command and environment where torch, diffusers and transformers are not installed:
    this interpreter without its site hook, on a copy of site-packages (symlinks) that leaves them out.

    Blocking imports instead (``sys.modules[name] = None``) would break SciPy, which looks torch up in
    ``sys.modules`` to recognise tensors, and NNCF, which asks ``importlib.util.find_spec``."""
    shadow = tmp_path / "site-packages"
    shadow.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.split("-")[0].split(".")[0].lower()
        if name not in ("torch", "torchgen", "functorch", "diffusers", "transformers") and entry.suffix != ".pth":
            (shadow / entry.name).symlink_to(entry)
    root = str(Path(__file__).resolve().parents[1])
    return [sys.executable, "-S"], {**os.environ, "PYTHONPATH": os.pathsep.join([root, str(shadow)])}


def test_quantize_works_without_torch(gan_artifact, tiny_sd_artifact, tmp_path):
    """`edgegen quantize` on artifacts exported with torch, where torch is not installed: calibration
    is recorded, gates and fallback run on engines and numpy only; the variants pass their gates."""
    python, env = _without_torch(tmp_path)
    code = f"""
        import sys
        from typer.testing import CliRunner
        from edgegen.cli import app
        try:
            import torch
            sys.exit("torch is importable")
        except ImportError:
            pass
        runs = [[{str(gan_artifact)!r}, "--out", {str(tmp_path / 'gan')!r}, "--backend", "openvino",
                 "--calibration-samples", "64", "--gate-samples", "16", "--force-int8"],
                [{str(tiny_sd_artifact)!r}, "--out", {str(tmp_path / 'sd')!r}, "--backend", "onnxruntime",
                 "--calibration-samples", "1", "--calibration-steps", "3", "--gate-samples", "1", "--force-int8"]]
        for args in runs:
            result = CliRunner().invoke(app, ["quantize", *args], catch_exceptions=False)
            print(result.output)
            if result.exit_code:
                sys.exit(result.exit_code)
    """
    proc = subprocess.run([*python, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name, backend, components in (("gan", "openvino", {"generator"}),
                                      ("sd", "onnxruntime", {"text_encoder", "unet", "vae_decoder"})):
        manifest = json.loads((tmp_path / name / "edgegen.json").read_text())
        report = manifest["quantization"]["int8"]
        assert report["backend"] == backend and report["rounds"][-1]["failed"] == []
        for component in components:
            variant = manifest["components"][component]["variants"]["int8"][backend]
            assert (tmp_path / name / variant["file"]).is_file()
