"""The runtime never imports torch: generating from an artifact, in a fresh interpreter."""

import subprocess
import sys
import textwrap

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
