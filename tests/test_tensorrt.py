"""TensorRT: profile and cache-key logic everywhere; engine build and run where TensorRT and a GPU exist."""

import importlib.util

import numpy as np
import pytest

from edgegen.errors import ArtifactError, BackendUnavailableError, EdgegenError, EngineLoadError
from edgegen.compile.profiles import cache_key, engine_specs, explain_mismatch, profile_request, profile_shapes, shape_range
from edgegen.runtimes.base import TensorSpec
from edgegen.runtimes.tensorrt import DeviceInfo

UNET_INPUTS = [TensorSpec("sample", ("batch", 4, "latent_height", "latent_width"), "float32"),
               TensorSpec("timestep", ("batch",), "float32"),
               TensorSpec("encoder_hidden_states", ("batch", "sequence", 768), "float32")]


def test_unet_profile_doubles_batch_for_cfg():
    sizes = shape_range(family="stable-diffusion", component="unet", height=512, width=512, batch=2,
                        min_height=256, max_height=768, max_batch=4)
    shapes = profile_shapes(UNET_INPUTS, sizes)
    assert shapes["sample"] == ((2, 4, 32, 64), (4, 4, 64, 64), (8, 4, 96, 64))
    assert shapes["timestep"] == ((2,), (4,), (8,))
    assert shapes["encoder_hidden_states"][1] == (4, 77, 768)
    no_cfg = profile_shapes(UNET_INPUTS, shape_range(family="stable-diffusion", component="unet", height=512,
                                                     width=512, cfg=False))
    assert no_cfg["sample"][1] == (1, 4, 64, 64)
    vae = shape_range(family="stable-diffusion", component="vae_decoder", height=512, width=768)
    assert vae.opt["batch"] == 1 and vae.opt["latent_width"] == 96


def test_profile_errors_are_clear():
    with pytest.raises(EdgegenError, match="height: expected a multiple of 8, got 500"):
        shape_range(family="stable-diffusion", component="unet", height=500, width=512)
    with pytest.raises(EdgegenError, match="expected min <= opt <= max"):
        shape_range(family="stable-diffusion", component="unet", height=512, width=512, max_height=256)
    with pytest.raises(EdgegenError, match="no size for dynamic dim 'frames'"):
        profile_shapes([TensorSpec("x", ("frames",), "float32")],
                       shape_range(family="unet", component="unet", height=64, width=64))


def test_min_opt_max_request_becomes_the_profile():
    request = profile_request(default_height=512, default_width=512, min=(256, 256), max=(768, 768, 2))
    assert request == {"height": 512, "width": 512, "batch": 1, "min_height": 256, "min_width": 256, "min_batch": 1,
                       "max_height": 768, "max_width": 768, "max_batch": 2}
    shapes = profile_shapes(UNET_INPUTS, shape_range(family="stable-diffusion", component="unet", **request))
    assert shapes["sample"] == ((2, 4, 32, 32), (2, 4, 64, 64), (4, 4, 96, 96))
    # a class-conditional pixel-space U-Net with CFG doubles its batch too; an unconditional one does not
    pixel = [TensorSpec("sample", ("batch", 1, 28, 28), "float32")]
    request = profile_request(default_height=28, default_width=28, max=(28, 28, 8))
    assert profile_shapes(pixel, shape_range(family="unet", component="unet", scale_factor=1, cfg=True, **request)
                          )["sample"] == ((2, 1, 28, 28), (2, 1, 28, 28), (16, 1, 28, 28))
    assert profile_shapes(pixel, shape_range(family="unet", component="unet", scale_factor=1, cfg=False, **request)
                          )["sample"][2] == (8, 1, 28, 28)
    with pytest.raises(EdgegenError, match=r"--max: expected HEIGHT,WIDTH\[,BATCH\]"):
        profile_request(default_height=64, default_width=64, max=(64,))


def test_profile_options_need_the_tensorrt_backend(tmp_path):
    from conftest import run_cli

    result = run_cli("export", "--module", "x.py:f", "--kind", "generator", "--max", "64,64,4", "--out", tmp_path / "a")
    assert result.exit_code != 0 and "expected --backend tensorrt" in result.output


def test_cache_key_changes_with_everything_that_makes_an_engine_invalid():
    orin = DeviceInfo("Orin", "8.7", "8.6.2")
    shapes = profile_shapes(UNET_INPUTS, shape_range(family="stable-diffusion", component="unet", height=512, width=512))
    base = cache_key(orin, onnx_sha256="ab", precision="fp16", profiles=shapes)
    assert base == cache_key(orin, onnx_sha256="ab", precision="fp16", profiles=dict(reversed(list(shapes.items()))))
    variants = [cache_key(DeviceInfo("Orin", "8.7", "10.3.0"), onnx_sha256="ab", precision="fp16", profiles=shapes),
                cache_key(DeviceInfo("RTX 4090", "8.9", "8.6.2"), onnx_sha256="ab", precision="fp16", profiles=shapes),
                cache_key(orin, onnx_sha256="cd", precision="fp16", profiles=shapes),
                cache_key(orin, onnx_sha256="ab", precision="int8", profiles=shapes),
                cache_key(orin, onnx_sha256="ab", precision="fp16",
                          profiles=profile_shapes(UNET_INPUTS, shape_range(family="stable-diffusion", component="unet",
                                                                           height=768, width=512))),
                # the FP16 overflow fallback (some layer types in FP32) is a different engine
                cache_key(orin, onnx_sha256="ab", precision="fp16", profiles=shapes, fp32_layers=("SOFTMAX",))]
    assert len({base, *variants}) == 7


def test_mismatch_is_explained_in_one_line():
    here = DeviceInfo("NVIDIA H200", "9.0", "10.3.0")
    assert explain_mismatch(here, {"gpu_name": "NVIDIA H200", "compute_capability": "9.0", "tensorrt_version": "10.3.0"}) is None
    msg = explain_mismatch(here, {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "8.6.2"})
    assert "\n" not in msg and "GPU 'Orin' != 'NVIDIA H200'" in msg and "TensorRT '8.6.2' != '10.3.0'" in msg
    assert msg.endswith("rebuilding")


def test_missing_tensorrt_or_cuda_provider_is_a_clear_error(tmp_path):
    from edgegen.runtimes import load_engine

    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(BackendUnavailableError, match=r"pip install 'edgegen\[tensorrt\]'"):
            load_engine(tmp_path / "x.plan", "tensorrt")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="install onnxruntime-gpu"):
            load_engine(tmp_path / "x.onnx", "onnxruntime", device="cuda")


needs_gpu = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                               reason="TensorRT is not installed (GPU machines only)")


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_engine_matches_onnxruntime(tiny_sd_artifact, tmp_path):
    from edgegen.artifact import Artifact
    from edgegen.runtimes.onnxruntime import OnnxRuntimeEngine
    from edgegen.compile.tensorrt import EngineCache
    from edgegen.runtimes.tensorrt import TensorRTEngine

    art = Artifact.load(tiny_sd_artifact)
    shapes = profile_shapes(art.component("unet").inputs,
                            shape_range(family="stable-diffusion", component="unet", height=32, width=32))
    cache = EngineCache(tmp_path / "engines")
    plan = cache.get(art.component_path("unet"), precision="fp32", profiles=shapes)
    assert cache.get(art.component_path("unet"), precision="fp32", profiles=shapes) == plan  # cached
    rng = np.random.default_rng(0)
    feeds = {"sample": rng.standard_normal((2, 4, 4, 4), dtype=np.float32), "timestep": np.array([10, 10], np.float32),
             "encoder_hidden_states": rng.standard_normal((2, 77, 32), dtype=np.float32)}
    ref = OnnxRuntimeEngine(art.component_path("unet"))(feeds)["noise_pred"]
    with TensorRTEngine(plan) as engine:
        got = engine(feeds)["noise_pred"]
    assert np.abs(ref - got).max() < 1e-3
    with pytest.raises(EngineLoadError, match="is closed"):
        engine(feeds)
    engine.close()  # idempotent


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_pipeline_fp16_close_to_cpu_fp32(tiny_sd_artifact):
    """The whole SD pipeline on FP16 engines (overflow fallback included) against ORT CPU FP32."""
    from edgegen.compile import compile
    from edgegen.pipelines import Pipeline

    compile(tiny_sd_artifact, precisions=["fp16"], opt=(8, 8))  # the 4x4 latents below (2x VAE)
    noise = np.random.default_rng(0).standard_normal((1, 4, 4, 4), dtype=np.float32)
    ref = Pipeline.load(tiny_sd_artifact, backend="onnxruntime")("a cat", num_inference_steps=4, init_noise=noise)
    got = Pipeline.load(tiny_sd_artifact, backend="tensorrt", precision="fp16")("a cat", num_inference_steps=4,
                                                                                init_noise=noise)
    assert np.isfinite(got.images).all() and np.abs(got.images - ref.images).max() < 0.05


def test_engine_specs_are_flat_inputs_axes_and_profile_side_by_side(tiny_sd_artifact):
    from edgegen.artifact import Artifact
    from edgegen.types import Precision

    specs = {s.component: s for s in engine_specs(Artifact.load(tiny_sd_artifact), Precision.fp16,
                                                   opt=(32, 32), max=(64, 64, 2))}
    unet = specs["unet"]
    assert [t.name for t in unet.inputs] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet.dynamic_axes["sample"] == {0: "batch", 2: "latent_height", 3: "latent_width"}
    assert unet.profile["sample"] == ((2, 4, 16, 16), (2, 4, 16, 16), (4, 4, 32, 32))  # CFG: two rows per image
    assert unet.onnx.name == "unet.onnx" and unet.request["max_batch"] == 2
    assert specs["vae_decoder"].profile["latents"][2] == (2, 4, 32, 32)  # the tiny VAE upscales 2x
    with pytest.raises(ArtifactError, match="no 'int8' variant"):
        engine_specs(Artifact.load(tiny_sd_artifact), Precision.int8)


def _inside(shape, profile) -> bool:
    lo, _, hi = profile
    return len(shape) == len(lo) and all(a <= d <= b for a, d, b in zip(lo, shape, hi))


def test_profiles_cover_the_shapes_long_prompts_feed(tiny_sd_artifact):
    """A 2-image call with a 3-window prompt and CFG, recorded on ONNX Runtime: every feed the text
    encoder (2 x 3 rows per call) and the U-Net (4 rows, 3 x 77 tokens) sees lies in the profiles."""
    from edgegen import Pipeline
    from edgegen.artifact import Artifact
    from edgegen.calibration.record import FeedRecorder
    from edgegen.compile.profiles import MAX_PROMPT_WINDOWS
    from edgegen.types import Precision

    recorder = FeedRecorder()
    pipe = Pipeline.load(tiny_sd_artifact, backend="onnxruntime", engine_hook=recorder)
    result = pipe("a red cat sits on the mat, " * 10, num_images=2, num_inference_steps=2, height=32, width=32)
    assert result.info["prompt_chunks"] == 3 == MAX_PROMPT_WINDOWS
    specs = {s.component: s for s in engine_specs(Artifact.load(tiny_sd_artifact), Precision.fp16,
                                                   opt=(32, 32), max=(32, 32, 2))}
    seen = [(name, k, v.shape) for name, calls in recorder.feeds.items() for feeds in calls for k, v in feeds.items()]
    assert ("text_encoder", "input_ids", (6, 77)) in seen  # prompt and negative: one call each
    assert ("unet", "encoder_hidden_states", (4, 231, 32)) in seen
    outside = [(name, k, shape) for name, k, shape in seen if not _inside(shape, specs[name].profile[k])]
    assert not outside, outside
    one = {s.component: s for s in engine_specs(Artifact.load(tiny_sd_artifact), Precision.fp16, opt=(32, 32),
                                                 max=(32, 32, 2), prompt_windows=1)}
    assert one["text_encoder"].profile["input_ids"][2] == (2, 77) and one["unet"].request["prompt_windows"] == 1
    assert one["unet"].profile["encoder_hidden_states"][2][1] == 77
    assert not _inside((6, 77), one["text_encoder"].profile["input_ids"])


def test_prompt_windows_widen_only_the_text_encoder_batch_and_the_sequence():
    enc = [TensorSpec("input_ids", ("batch", 77), "int64")]
    text = profile_shapes(enc, shape_range(family="stable-diffusion", component="text_encoder", height=512, width=512,
                                           batch=1, max_batch=4, prompt_windows=5))
    assert text["input_ids"] == ((1, 77), (1, 77), (20, 77))  # 4 images x 5 windows; opt: one window
    unet = profile_shapes(UNET_INPUTS, shape_range(family="stable-diffusion", component="unet", height=512, width=512,
                                                   batch=1, max_batch=4, prompt_windows=5))
    assert unet["encoder_hidden_states"] == ((2, 77, 768), (2, 77, 768), (8, 385, 768))  # CFG doubles the batch only
    assert unet["sample"][2] == (8, 4, 64, 64)
    for bad in (0, 1.5, True):
        with pytest.raises(EdgegenError, match="prompt_windows: expected an integer >= 1"):
            shape_range(family="stable-diffusion", component="unet", height=512, width=512, prompt_windows=bad)


def test_pipelines_only_load_engines_and_name_the_command_that_builds_them(tiny_sd_artifact, tmp_path):
    import json
    import shutil

    from edgegen.artifact import Artifact
    from edgegen.compile.tensorrt import find_engine

    art = Artifact.load(shutil.copytree(tiny_sd_artifact, tmp_path / "sd"))
    here = DeviceInfo("NVIDIA H200", "9.0", "10.3.0")
    with pytest.raises(EngineLoadError, match=rf"no TensorRT fp16 engine for component 'unet'; build it with: "
                                              rf"edgegen compile {art.path} --backend tensorrt --fp16"):
        find_engine(art, "unet", "fp16", here)
    (art.path / "engines").mkdir()
    (art.path / "engines" / "k.plan").write_bytes(b"plan")
    entry = {"plan": "k.plan", "gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "8.6.2"}
    (art.path / "engines" / "index.json").write_text(json.dumps({"unet": {"fp32": entry}}))
    with pytest.raises(EngineLoadError, match=r"for this device \(.*GPU 'Orin' != 'NVIDIA H200'.*\); build it with"):
        find_engine(art, "unet", "fp32", here)
    assert find_engine(art, "unet", "fp32", DeviceInfo("Orin", "8.7", "8.6.2")) == art.path / "engines" / "k.plan"


def test_compile_refuses_backends_that_compile_at_load(tiny_sd_artifact):
    from conftest import run_cli

    result = run_cli("compile", tiny_sd_artifact, "--backend", "openvino")
    assert result.exit_code == 1 and "compile backend: expected tensorrt" in result.output


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_compile_without_tensorrt_names_the_extra(tiny_sd_artifact):
    from edgegen.compile import compile

    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgegen\[tensorrt\]'"):
        compile(tiny_sd_artifact, precisions=["fp16"])
