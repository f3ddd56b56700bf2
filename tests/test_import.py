"""`edgegen import` of optimum exports: the real optimum-cli's output on a micro random-init SD.

Fixtures: tests/fixtures/optimum/, made by tests/fixtures/make_optimum_fixtures.py (optimum-onnx
0.1.0 / optimum-intel 2.2.0; versions.json there). Tolerances: the U-Net gate 1e-4 (measured 0.0:
the adapted graph computes what optimum's does); images vs diffusers 2e-3 as in
test_sd_pipeline.py (measured 9e-7 ONNX, 6e-7 OpenVINO FP32 on 2026-11-23).
"""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from edgegen import Pipeline
from edgegen.errors import BackendUnavailableError, ImportSourceError, ParityError
from edgegen.importers import import_optimum

FIXTURES = Path(__file__).parent / "fixtures" / "optimum"
EXPORTS = ("onnx", "openvino", "openvino-int8")
H = W = 16


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("imported")
    return {name: import_optimum(FIXTURES / name, root / name) for name in EXPORTS}


@pytest.mark.parametrize("name", EXPORTS)
def test_import_maps_components_and_gates_the_unet(imported, name):
    m = json.loads((imported[name] / "edgegen.json").read_text())
    assert m["family"] == "stable-diffusion" and m["source"]["kind"] == f"optimum-{name.split('-')[0]}"
    unet = m["components"]["unet"]
    assert unet["format"] == name.split("-")[0]
    assert unet["precision"] == ("int8" if name.endswith("int8") else "fp32")
    assert unet["parity"]["outputs"]["noise_pred"]["max_abs"] <= 1e-4
    assert [i["name"] for i in unet["inputs"]] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet["inputs"][1]["shape"] == ["batch"]
    assert m["components"]["vae_decoder"]["inputs"][0]["name"] == "latents"
    assert m["components"]["vae_decoder"]["outputs"][0]["name"] == "image"
    assert m["scheduler"]["_class_name"] == "DDIMScheduler" and m["latent"]["scaling_factor"] == pytest.approx(0.18215)
    assert m["tokenizer"] == {"file": "tokenizer.json", "max_length": 77, "pad_id": 519}


@pytest.mark.parametrize("name", ["openvino", "openvino-int8"])
def test_openvino_weights_are_optimums_bytes(imported, name):
    for comp in ("text_encoder", "unet", "vae_decoder"):
        ours = (imported[name] / f"{comp}.bin").read_bytes()
        assert ours == (FIXTURES / name / comp / "openvino_model.bin").read_bytes(), comp
    # Nothing to adapt in the text encoder: the IR itself is copied.
    assert (imported[name] / "text_encoder.xml").read_bytes() == (FIXTURES / name / "text_encoder" / "openvino_model.xml").read_bytes()


def test_onnx_initializers_are_optimums(imported):
    import onnx

    for comp in ("unet", "vae_decoder"):
        ours = onnx.load(str(imported["onnx"] / f"{comp}.onnx")).graph.initializer
        theirs = {t.name: t.raw_data for t in onnx.load(str(FIXTURES / "onnx" / comp / "model.onnx")).graph.initializer}
        assert {t.name: t.raw_data for t in ours if t.name in theirs} == theirs


NOISE = np.random.default_rng(3).standard_normal((2, 4, H // 2, W // 2), dtype=np.float32)
PROMPT = dict(prompt="a red cube on a table", negative_prompt="blurry", num_inference_steps=10, guidance_scale=7.5)


@pytest.fixture(scope="module")
def reference_images() -> np.ndarray:
    """diffusers' StableDiffusionPipeline on the micro SD that optimum exported: (2, H, W, 3) in [0, 1]."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(FIXTURES / "micro-sd"), safety_checker=None,
                                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**PROMPT, num_images_per_prompt=2, latents=torch.from_numpy(NOISE), height=H, width=W,
                output_type="np").images


@pytest.mark.parametrize("name,backend,limit", [("onnx", "onnxruntime", 2e-3), ("onnx", "openvino", 2e-3),
                                                ("openvino", "openvino", 2e-3),
                                                # INT8 weights: measured 6.4e-3 from FP32 diffusers.
                                                ("openvino-int8", "openvino", 0.05)])
def test_images_match_diffusers_on_the_same_noise(imported, reference_images, name, backend, limit):
    got = Pipeline.load(imported[name], backend=backend)(**PROMPT, sampler="ddim", init_noise=NOISE, height=H, width=W)
    assert got.images.shape == reference_images.shape
    assert np.abs(got.images - reference_images).max() <= limit


@pytest.mark.parametrize("name", ["onnx", "openvino"])
def test_tokenizer_matches_transformers(imported, name):
    """ONNX export: tokenizer.json built from vocab.json + merges.txt; OpenVINO export: optimum's copied."""
    transformers = pytest.importorskip("transformers")
    from edgegen.tokenizer import ClipTokenizer

    reference = transformers.CLIPTokenizer.from_pretrained(str(FIXTURES / "micro-sd" / "tokenizer"))
    tok = json.loads((imported[name] / "edgegen.json").read_text())["tokenizer"]
    ours = ClipTokenizer(imported[name] / tok["file"], max_length=tok["max_length"], pad_id=tok["pad_id"])
    prompts = ["the cat", "", "A photo of an astronaut riding a horse on Mars, 4k!!", "word " * 100, "Ünïcode ✓"]
    expected = reference(prompts, padding="max_length", max_length=77, truncation=True).input_ids
    np.testing.assert_array_equal(ours(prompts), np.asarray(expected))


def test_import_and_run_with_torch_unimportable(tmp_path):
    code = f"""
        import sys
        for name in ("torch", "diffusers", "transformers"):
            sys.modules[name] = None
        from edgegen.cli import app
        for name in ("onnx", "openvino-int8"):
            out = {str(tmp_path)!r} + "/" + name
            app(["import", {str(FIXTURES)!r} + "/" + name, "--out", out], standalone_mode=False)
            app(["run", out, "--prompt", "a cat", "--steps", "2", "--out", out + "-png"], standalone_mode=False)
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(list((tmp_path / "onnx-png").glob("*.png"))) == 1
    assert len(list((tmp_path / "openvino-int8-png").glob("*.png"))) == 1


def test_malformed_directory_is_one_typed_error_naming_what_is_missing(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(FIXTURES / "onnx", broken)
    (broken / "unet" / "model.onnx").unlink()
    (broken / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(ImportSourceError) as err:
        import_optimum(broken, tmp_path / "art")
    assert "unet/model.onnx" in str(err.value) and "tokenizer/" in str(err.value)
    result = run_cli("import", broken, "--out", tmp_path / "art")
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "missing unet/model.onnx" in errors[0], result.output
    assert not (tmp_path / "art").exists()


def test_failed_gate_writes_nothing(tmp_path):
    with pytest.raises(ParityError, match="import of 'text_encoder'"):
        import_optimum(FIXTURES / "onnx", tmp_path / "art", atol=-1.0)
    assert not (tmp_path / "art").exists() and not list(tmp_path.iterdir())


def test_openvino_ir_needs_the_openvino_backend(imported):
    with pytest.raises(BackendUnavailableError, match="OpenVINO IR: expected backend openvino"):
        Pipeline.load(imported["openvino"], backend="onnxruntime")


def test_external_data_is_copied_beside_the_component(tmp_path):
    """optimum writes a U-Net past 2 GB as model.onnx + model.onnx_data; the same layout, made here
    from the micro U-Net, lands as unet.onnx + unet.onnx.data with the weights' bytes unchanged."""
    import onnx

    src = tmp_path / "onnx-external"
    shutil.copytree(FIXTURES / "onnx", src)
    model = onnx.load(str(src / "unet" / "model.onnx"))
    onnx.save_model(model, str(src / "unet" / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.onnx_data", size_threshold=0)
    art = import_optimum(src, tmp_path / "art")
    assert (art / "unet.onnx.data").read_bytes() == (src / "unet" / "model.onnx_data").read_bytes()
    m = json.loads((art / "edgegen.json").read_text())
    assert "external data model.onnx_data -> unet.onnx.data" in m["components"]["unet"]["adapted"]
    assert m["components"]["unet"]["parity"]["outputs"]["noise_pred"]["max_abs"] <= 1e-4
    assert Pipeline.load(art, backend="onnxruntime")("a cat", num_inference_steps=2, height=H, width=W).images.shape == (1, H, W, 3)


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgegen\[import\]'"):
        import_optimum(FIXTURES / "onnx", tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_an_input_edgegen_does_not_feed_is_refused_by_name(tmp_path):
    """An LCM / SDXL-style U-Net input (here an unused 'timestep_cond' added to the micro U-Net) is named, not ignored."""
    import onnx
    from onnx import TensorProto, helper

    src = tmp_path / "onnx-extra"
    shutil.copytree(FIXTURES / "onnx", src)
    model = onnx.load(str(src / "unet" / "model.onnx"))
    model.graph.input.append(helper.make_tensor_value_info("timestep_cond", TensorProto.FLOAT, ["batch_size", 8]))
    onnx.save_model(model, str(src / "unet" / "model.onnx"))
    with pytest.raises(ImportSourceError, match="no input 'timestep_cond'"):
        import_optimum(src, tmp_path / "art")
    assert not (tmp_path / "art").exists()
