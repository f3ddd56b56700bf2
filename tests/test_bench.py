"""`edgegen bench` on an FP32 + INT8 artifact: three reports, figures checked independently."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("nncf")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def sd_int8(tiny_sd_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("b") / "sd8"
    result = run_cli("export", "--model", "sd", "--from", tiny_sd_dir, "--int8", "--calibration-samples", "1",
                     "--calibration-steps", "4", "--gate-samples", "1", "--force-int8", "--out", out)
    assert result.exit_code == 0, result.output
    return out


BALLAST_MIB = 400


@pytest.fixture(scope="module")
def report_dir(sd_int8, tmp_path_factory):
    # Raise this process's peak RSS first: a worker started from here must report its own peak,
    # not inherit this one (Linux carries ru_maxrss over a vfork + exec).
    ballast = np.ones(BALLAST_MIB * 2**20 // 8)
    ballast[:] = 2.0
    del ballast
    out = tmp_path_factory.mktemp("report")
    result = run_cli("bench", sd_int8, "--steps", "4", "--runs", "2", "--num-images", "2", "--height", "32",
                     "--width", "32", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_reports_are_written_with_units_and_both_precisions(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    assert report["units"]["peak_rss_mb"] == "MiB"
    rows = {r["precision"]: r for r in report["results"]}
    assert set(rows) == {"fp32", "int8"}
    for row in rows.values():
        assert row["seconds_per_image"]["median"] > 0 and row["peak_rss_mb"] > 50
        assert set(row["engines"]) == {"text_encoder", "unet", "vae_decoder"}
        assert 0 <= row["outside_share"] < 0.5
    assert rows["fp32"]["quality"]["psnr_db"]["median"] == 100.0  # identical to itself
    assert rows["int8"]["quality"]["ssim"]["mean"] > 0.5
    md = (report_dir / "report.md").read_text()
    assert "| configuration |" in md and "int8" in md
    from edgegen.atomic import umask_mode

    for name in ("report.json", "report.md", "report.html"):  # umask modes, not mkstemp's 0600
        assert (report_dir / name).stat().st_mode & 0o777 == umask_mode(), name


def test_html_opens_in_headless_chromium_with_grids_and_plot(report_dir, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    shot = tmp_path / "shot.png"
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          (report_dir / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<figure>") == 2 and 'id="plot"' in dom.stdout
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    (report_dir / "report.html").as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # the page rendered content, not a blank


def test_peak_rss_is_the_workers_own_and_agrees_with_time_v(sd_int8, report_dir, tmp_path):
    """The peak RSS bench reports (measured from a parent with a high peak) against GNU time's
    'Maximum resident set size' of the same worker run alone: within 15%, and far below the parent's.

    Before the fix every row showed the parent's peak (1038 MiB inside `edgegen demo`)."""
    import resource

    from edgegen.bench.run import worker_command

    time_bin = "/usr/bin/time"
    if not shutil.os.path.exists(time_bin):
        pytest.skip("GNU time is not installed at /usr/bin/time (.ci/run installs it; apt-get install -y time)")
    report = json.loads((report_dir / "report.json").read_text())
    row = next(r for r in report["results"] if r["precision"] == "fp32")
    cfg = {"artifact": str(sd_int8), "backend": row["backend"], "precision": "fp32", "steps": 4, "runs": 2, "warmup": 1,
           "seed": 0, "num_images": 2, "prompt": "a lighthouse on a cliff at sunset", "guidance_scale": 7.5,
           "sampler": None, "height": 32, "width": 32, "images_out": str(tmp_path / "i.npy"),
           "result_out": str(tmp_path / "r.json")}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    proc = subprocess.run([time_bin, "-v", *worker_command(tmp_path / "c.json")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if "Maximum resident set size" in x)
    gnu_mb = int(line.split(":")[1]) / 1024
    alone = json.loads((tmp_path / "r.json").read_text())["peak_rss_mb"]
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: bench row {row['peak_rss_mb']:.0f} MiB, worker alone {alone:.0f} MiB, "
          f"/usr/bin/time -v {gnu_mb:.0f} MiB, parent {parent_mb:.0f} MiB")
    assert abs(alone - gnu_mb) / gnu_mb <= 0.10
    assert abs(row["peak_rss_mb"] - gnu_mb) / gnu_mb <= 0.15
    assert row["peak_rss_mb"] < parent_mb - BALLAST_MIB / 2


def test_engine_times_add_up(report_dir):
    for row in json.loads((report_dir / "report.json").read_text())["results"]:
        engines = sum(e["seconds_per_image"] for e in row["engines"].values())
        assert engines <= row["seconds_per_image"]["median"] * 1.001
        assert row["engine_sum_ratio"] >= 1.0


def test_tiny_decoder_time_and_quality_cost(tiny_sd_dir, tmp_path):
    """An artifact with a tiny decoder: both decoders' time and PSNR / SSIM of tiny vs full on the same
    latents, in report.json / .md / .html; the PSNR agrees with one computed here from the library."""
    from random_sd import build_random_tiny_vae

    from edgegen import Pipeline
    from edgegen.export import export_stable_diffusion
    from edgegen.metrics import image_figures

    art = export_stable_diffusion(tiny_sd_dir, tmp_path / "art", tiny_vae=build_random_tiny_vae(tmp_path / "taesd"),
                                  components=("text_encoder", "unet", "vae_decoder"))
    out = tmp_path / "report"
    result = run_cli("bench", art, "--backend", "onnxruntime", "--steps", "2", "--runs", "1", "--warmup", "0",
                     "--num-images", "2", "--height", "32", "--width", "32", "--out", out)
    assert result.exit_code == 0, result.output
    (row,) = json.loads((out / "report.json").read_text())["results"]
    d = row["decoders"]
    assert d["full"]["decode_s_per_image"] > 0 and d["tiny"]["decode_s_per_image"] > 0
    assert d["decode_speedup"] == pytest.approx(d["full"]["decode_s_per_image"] / d["tiny"]["decode_s_per_image"])
    assert row["engines"]["vae_decoder_tiny"]["calls_per_run"] == 0  # the main runs use the full decoder
    pipe = Pipeline.load(art, backend="onnxruntime")
    args = dict(num_inference_steps=2, seed=0, num_images=2, height=32, width=32)
    full, tiny = (pipe("a lighthouse on a cliff at sunset", decoder=k, **args).images for k in ("full", "tiny"))
    expected = image_figures(list(full), list(tiny))
    assert d["tiny_vs_full"]["psnr_db"]["median"] == pytest.approx(expected["psnr_db"]["median"], abs=0.01)
    assert "## Decoders: full vs tiny on the same latents" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count("<figure>") == 2 and "tiny decoder</figcaption>" in page and "decode speedup" in page
