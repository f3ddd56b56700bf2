"""Low-memory mode (components loaded per stage and freed after), automatic tiled decoding under a
memory budget, and the peak memory the CLI and bench print. Real engines on the tiny random-init SD;
memory itself is measured in docs/memory.md, not asserted here (RSS depends on the machine)."""

import gc
import subprocess
import sys
import weakref

import numpy as np
import pytest

from conftest import run_cli
from edgegen import Pipeline
from edgegen.errors import EngineInputError, EngineLoadError
from edgegen.runtimes import load_engine
from edgegen.tiling import choose_tile_size

CALL = dict(num_inference_steps=3, guidance_scale=7.5, seed=3)


class StageWatch:
    """An engine hook: keeps a weakref to every engine loaded and, at each load, which earlier
    engines were still alive; wraps each engine to count the feeds it sees."""

    def __init__(self):
        self.loaded, self.alive_at_load, self.feeds = [], [], {}

    def __call__(self, name, engine):
        gc.collect()
        self.alive_at_load.append((name, [n for n, ref in self.loaded if ref() is not None]))
        self.loaded.append((name, weakref.ref(engine)))
        seen = self.feeds.setdefault(name, [])

        def run(feeds):
            seen.append(sorted(feeds))
            return engine(feeds)

        run.backend, run.precision, run.inputs, run.outputs = engine.backend, engine.precision, engine.inputs, engine.outputs
        return run


def test_low_memory_gives_the_default_images(tiny_sd_artifact):
    default = Pipeline.load(tiny_sd_artifact)("a red cube", **CALL)
    low = Pipeline.load(tiny_sd_artifact, memory="low", memory_budget=1 << 40)("a red cube", **CALL)
    np.testing.assert_array_equal(low.images, default.images)
    assert low.info["tile_size"] is None and "budget" in low.info["tile_reason"]
    assert low.timings["engines"]["unet"]["calls"] == default.timings["engines"]["unet"]["calls"] == 3


def test_low_memory_releases_each_stage_before_the_next_loads(tiny_sd_artifact):
    watch = StageWatch()
    pipe = Pipeline.load(tiny_sd_artifact, memory="low", engine_hook=watch)
    assert watch.loaded == [] and not any(e.loaded for e in pipe.engines.values()), "nothing loads at Pipeline.load"
    pipe("a red cube", **CALL)
    gc.collect()
    assert [name for name, _ in watch.loaded] == ["text_encoder", "unet", "vae_decoder"]
    assert watch.alive_at_load == [("text_encoder", []), ("unet", []), ("vae_decoder", [])]
    assert all(ref() is None for _, ref in watch.loaded), "every engine is freed when the call returns"
    assert {n: len(f) for n, f in watch.feeds.items()} == {"text_encoder": 2, "unet": 3, "vae_decoder": 1}
    assert watch.feeds["unet"][0] == ["encoder_hidden_states", "sample", "timestep"]
    pipe("a red cube", **CALL)  # a second call loads every component again
    assert len(watch.loaded) == 6 and pipe.engines["unet"].loads == 1


def test_low_memory_img2img_frees_the_vae_encoder_before_the_text_encoder_loads(tiny_sd_artifact):
    from edgegen.artifact import Artifact

    if "vae_encoder" not in Artifact.load(tiny_sd_artifact).spec.components:
        pytest.skip("this tiny artifact was exported without a vae_encoder")
    image = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    default = Pipeline.load(tiny_sd_artifact)("a red cube", init_image=image, strength=0.6, **CALL)
    watch = StageWatch()
    low = Pipeline.load(tiny_sd_artifact, memory="low", memory_budget=1 << 40, engine_hook=watch)
    result = low("a red cube", init_image=image, strength=0.6, **CALL)
    np.testing.assert_array_equal(result.images, default.images)
    assert [name for name, _ in watch.loaded] == ["vae_encoder", "text_encoder", "unet", "vae_decoder"]
    assert all(alive == [] for _, alive in watch.alive_at_load)


def test_default_memory_keeps_engines_loaded(tiny_sd_artifact):
    watch = StageWatch()
    pipe = Pipeline.load(tiny_sd_artifact, engine_hook=watch)
    assert [name for name, _ in watch.loaded] == ["text_encoder", "unet", "vae_decoder"]
    result = pipe("a red cube", **CALL)
    assert all(ref() is not None for _, ref in watch.loaded) and len(watch.loaded) == 3
    assert result.timings["load_s"] == 0 and "tile_size" not in result.info, "own size: no estimate is made"


def test_engines_are_released_when_a_call_fails(tiny_sd_artifact):
    pipe = Pipeline.load(tiny_sd_artifact, memory="low")

    def stop(step, sigma, x0):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe("a red cube", callback=stop, **CALL)
    assert not any(e.loaded for e in pipe.engines.values())


@pytest.mark.parametrize("memory", ["default", "low"])
def test_a_small_budget_tiles_the_decode(tiny_sd_artifact, memory):
    pipe = Pipeline.load(tiny_sd_artifact, memory=memory, memory_budget=1)
    result = pipe("a red cube", height=256, width=256, **CALL)
    assert result.info["tile_size"] == 128 and result.info["tile_reason"].startswith("auto: budget 0.00 GiB")
    assert "still over" in result.info["tile_reason"]
    whole = Pipeline.load(tiny_sd_artifact, memory=memory, memory_budget=1 << 40)("a red cube", height=256,
                                                                                   width=256, **CALL)
    assert whole.info["tile_size"] is None
    tiled = pipe("a red cube", height=256, width=256, tile_size=128, **CALL)
    np.testing.assert_array_equal(result.images, tiled.images)
    assert tiled.info["tile_reason"] == "given"


def test_choose_tile_size_halves_until_it_fits():
    shape, rate = (1, 4, 128, 128), 10_000.0  # a 1024 px image; its whole decode needs 163.84 MB
    image = 4 * 7 * 1024 * 1024  # the blended (B, 3, H, W) image, its [0, 1] copy and the weights

    def choose(available):
        return choose_tile_size(shape, scale_factor=8, out_channels=3, bytes_per_latent=rate, available=available)

    assert choose(200_000_000) == (None, 163_840_000)
    assert choose(image + 41_000_000) == (512, image + 40_960_000)
    assert choose(image + 3_000_000) == (128, image + 2_560_000)
    assert choose(0) == (128, image + 2_560_000), "the smallest tile, with its need, when nothing fits"


def test_memory_arguments_are_checked(tiny_sd_artifact):
    with pytest.raises(EngineInputError, match="memory: expected one of default, low, got 'tiny'"):
        Pipeline.load(tiny_sd_artifact, memory="tiny")
    with pytest.raises(EngineInputError, match="memory_budget: expected a positive number of bytes"):
        Pipeline.load(tiny_sd_artifact, memory_budget=-5)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_closed_engine_says_so(tiny_sd_artifact, backend):
    from edgegen.artifact import Artifact

    engine = load_engine(Artifact.load(tiny_sd_artifact).component_path("text_encoder"), backend)
    with engine:
        engine({"input_ids": np.zeros((1, 77), np.int64)})
    with pytest.raises(EngineLoadError, match="was closed"):
        engine({"input_ids": np.zeros((1, 77), np.int64)})


def test_cli_low_memory_prints_peak_memory(tiny_sd_artifact, tmp_path):
    """A fresh process (the largest stage is reported only when a stage raised the process's peak,
    and this test process has been higher before)."""
    proc = subprocess.run([sys.executable, "-m", "edgegen", "run", str(tiny_sd_artifact), "--out", str(tmp_path / "low"),
                           "--prompt", "a red cube", "--steps", "2", "--memory", "low", "--height", "256", "--width",
                           "256", "--memory-budget", "0.01"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    memory = next(line for line in lines if line.startswith("peak memory"))
    assert "GiB (process), largest component" in memory and "; largest stage " in memory
    assert memory.endswith("memory mode low")
    assert any(line.startswith("decoded in tiles of 128 px (auto: budget 0.01 GiB") for line in lines)
    result = run_cli("run", tiny_sd_artifact, "--out", tmp_path / "default", "--prompt", "a red cube",
                     "--steps", "2")
    assert result.exit_code == 0, result.output
    memory = next(line for line in result.output.splitlines() if line.startswith("peak memory"))
    assert "largest stage" not in memory and memory.endswith("memory mode default")


def test_bench_measures_each_memory_mode(tiny_sd_artifact):
    from edgegen.bench.run import BenchOptions, bench

    report = bench([tiny_sd_artifact], BenchOptions(steps=2, runs=1, warmup=0, num_images=1, precisions=("fp32",),
                                                    memory=("default", "low")))
    default, low = report["results"]
    assert (default["memory"], low["memory"]) == ("default", "low")
    assert low["largest_stage"] in ("text_encoder", "unet", "vae_decoder") and low["largest_stage_mb"] > 0
    assert default["largest_stage"] is None and default["largest_component_mb"] > 0
    assert low["quality"]["psnr_db"]["median"] >= 100, "the same images as default mode (PSNR capped at 100 dB)"
