"""Artifacts are all-or-nothing; bad checkpoints, bad options and bad manifests fail in one clear line."""

import json

import numpy as np
import pytest

from conftest import run_cli, shared

from edgegen.artifact import Artifact, atomic_artifact
from edgegen.errors import ArtifactError

torch = pytest.importorskip("torch")


def gan_args(out, *extra):
    d = shared("mnist-gan-mlp")
    return ("export", "--module", f"{d}/model.py:load", "--weights", d / "generator.ckpt", "--kind", "generator",
            "--latent-shape", "64", "--image-shape", "1,28,28", "--out", out, *extra)


def test_failed_parity_gate_leaves_previous_artifact_untouched(tmp_path):
    art = tmp_path / "gan"
    assert run_cli(*gan_args(art)).exit_code == 0
    before = {p.name: p.read_bytes() for p in art.iterdir()}
    result = run_cli(*gan_args(art, "--atol", "0", "--rtol", "0"))
    assert result.exit_code == 1 and "parity gate failed" in result.output
    assert {p.name: p.read_bytes() for p in art.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["gan"]  # no staging directory left behind


def test_interrupted_write_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_artifact(tmp_path / "a") as (staging, manifest):
            (staging / "half.onnx").write_bytes(b"\0" * 10)
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    result = run_cli(*gan_args(tmp_path / "mine"))
    assert result.exit_code == 1 and "without edgegen.json" in result.output
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_needing_code_is_refused_not_executed(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(2), "extra": Evil()}, bad)
    d = shared("mnist-gan-mlp")
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", bad, "--kind", "generator",
                     "--latent-shape", "64", "--image-shape", "1,28,28", "--out", tmp_path / "x")
    assert result.exit_code == 1
    assert "needs arbitrary code" in result.output and "pwned" not in result.output
    assert not (tmp_path / "x").exists()


def test_missing_kind_options_and_bad_module_spec(tmp_path):
    d = shared("ddpm-mnist")
    result = run_cli("export", "--module", f"{d}/model.py:load", "--weights", d / "ddpm_mnist.pt", "--kind", "unet",
                     "--out", tmp_path / "x")
    assert result.exit_code == 1 and "--kind unet needs --sample-shape" in result.output
    result = run_cli("export", "--module", f"{d}/model.py", "--kind", "unet", "--out", tmp_path / "x")
    assert result.exit_code == 1 and "expected FILE.py:CALLABLE" in result.output
    result = run_cli("export", "--module", f"{d}/model.py:nothing", "--kind", "generator", "--latent-shape", "4",
                     "--image-shape", "1,2,2", "--out", tmp_path / "x")
    assert result.exit_code == 1 and "expected a callable 'nothing'" in result.output
    result = run_cli("export", "--module", f"{d}/model.py:load", "--kind", "unet", "--sample-shape", "1,28",
                     "--out", tmp_path / "x")
    assert result.exit_code == 2 and "--sample-shape" in result.output


def test_manifest_validation(tmp_path):
    with pytest.raises(ArtifactError, match="expected a directory with edgegen.json"):
        Artifact.load(tmp_path)
    (tmp_path / "edgegen.json").write_text(json.dumps({"schema_version": 99, "family": "unet"}))
    with pytest.raises(ArtifactError, match="expected schema_version 1, got 99"):
        Artifact.load(tmp_path)
    (tmp_path / "edgegen.json").write_text(json.dumps({"schema_version": 1, "family": "unet",
                                                       "components": {"unet": {"file": "gone.onnx"}}}))
    with pytest.raises(ArtifactError, match="expects file 'gone.onnx', not found"):
        Artifact.load(tmp_path)
    result = run_cli("run", tmp_path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and result.output.startswith("error:")


def test_manifest_contents_for_a_user_module(tmp_path):
    assert run_cli(*gan_args(tmp_path / "gan")).exit_code == 0
    m = json.loads((tmp_path / "gan" / "edgegen.json").read_text())
    comp = m["components"]["generator"]
    assert m["family"] == "generator" and m["image"]["output_range"] == [-1.0, 1.0]
    assert comp["source_sha256"].startswith("3163c6503c144d35")  # shared/models/README.md
    assert comp["inputs"] == [{"name": "z", "shape": ["batch", 64], "dtype": "float32"}]
    assert comp["parity"]["outputs"]["image"]["max_abs"] < 1e-5
    assert comp["parity"]["outputs"]["image"]["psnr_db"] is None or comp["parity"]["outputs"]["image"]["psnr_db"] > 80
