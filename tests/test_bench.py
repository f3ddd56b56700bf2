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

# A steps-to-quality results file as benchmarks/steps_to_quality.py writes one (figures made up, shapes real).
STEPS = {"samples": 1000, "guidance_scale": 3.0, "backend": "openvino", "rows": [
    dict(name="ddim-50", sampler="ddim", sigmas="discrete", steps=50, seed=0, agreement=0.997, fd_real=18.6),
    dict(name="ddim-50 (seed 2)", sampler="ddim", sigmas="discrete", steps=50, seed=1, agreement=1.0, fd_real=21.1),
    *[dict(name=f"dpmpp-2m {s} {n}", sampler="dpmpp-2m", sigmas=s, steps=n, seed=0, agreement=a, fd_real=f,
           samples=1000) for s, n, a, f in (("karras", 6, 0.28, 226.0), ("karras", 10, 0.987, 19.7),
                                             ("discrete", 6, 0.993, 16.5), ("discrete", 10, 0.99, 28.6))]]}


@pytest.fixture(scope="module")
def steps_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("stq") / "steps_to_quality.json"
    path.write_text(json.dumps(STEPS))
    return path


@pytest.fixture(scope="module")
def report_dir(sd_int8, steps_file, tmp_path_factory):
    # Raise this process's peak RSS first: a worker started from here must report its own peak,
    # not inherit this one (Linux carries ru_maxrss over a vfork + exec).
    ballast = np.ones(BALLAST_MIB * 2**20 // 8)
    ballast[:] = 2.0
    del ballast
    out = tmp_path_factory.mktemp("report")
    result = run_cli("bench", sd_int8, "--steps", "4", "--runs", "2", "--num-images", "2", "--height", "32",
                     "--width", "32", "--steps-to-quality", steps_file, "--out", out)
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
    assert dom.stdout.count("<figure>") == 2 and 'id="plot"' in dom.stdout and 'id="steps-plot"' in dom.stdout
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", "--window-size=1200,1600",
                    (report_dir / "report.html").as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # the page rendered content, not a blank


def test_steps_to_quality_figures_are_in_every_report(report_dir):
    report = json.loads((report_dir / "report.json").read_text())
    rows = report["steps_to_quality"]["rows"]
    assert [r["name"] for r in rows] == [r["name"] for r in STEPS["rows"]] and rows[0]["samples"] == 1000
    assert "| dpmpp-2m karras 10 | 10 | 1000 | 98.7% | 19.70 |" in (report_dir / "report.md").read_text()


def test_steps_plot_draws_lines_per_sampler_and_a_band_for_seeds(steps_file):
    import io

    from PIL import Image

    from edgegen.bench.steps import _groups, plot, read

    data = read(steps_file)
    lines, bands = _groups(data)
    assert set(lines) == {("dpmpp-2m", "karras"), ("dpmpp-2m", "discrete")} and [r.steps for r in lines[("dpmpp-2m", "karras")]] == [6, 10]
    assert set(bands) == {("ddim", "discrete")} and len(bands[("ddim", "discrete")]) == 2
    image = Image.open(io.BytesIO(plot(data)))
    assert image.format == "PNG" and image.size[0] > 2 * image.size[1]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("rows"), "key 'rows' expected a non-empty list"),
    (lambda d: d["rows"][1].pop("fd_real"), "key 'rows\\[1\\].fd_real' expected float, got None"),
    (lambda d: d["rows"][2].update(steps=6.5), "key 'rows\\[2\\].steps' expected int, got 6.5"),
    (lambda d: d.update(samples="many"), "key 'samples' expected int, got 'many'"),
])
def test_steps_file_errors_name_the_key(tmp_path, change, message):
    from edgegen.bench.steps import read
    from edgegen.errors import InputError

    data = json.loads(json.dumps(STEPS))
    change(data)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message):
        read(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="expected a JSON results file"):
        read(path)


def test_bench_refuses_a_bad_steps_file_before_measuring(sd_int8, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"samples": 10}))
    result = run_cli("bench", sd_int8, "--steps-to-quality", bad, "--out", tmp_path / "r")
    assert result.exit_code == 1 and "key 'guidance_scale' expected float" in result.output
    assert not (tmp_path / "r").exists()


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
