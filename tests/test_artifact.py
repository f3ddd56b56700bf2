"""Artifacts are all-or-nothing; bad checkpoints, bad options and bad manifests fail in one clear line."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, shared

from edgegen.artifact import Artifact, atomic_artifact
from edgegen.errors import ArtifactError, ManifestError

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
    with pytest.raises(ArtifactError, match="schema_version: expected the int 1, got 99"):
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


# --- the typed manifest: every corruption is one ManifestError naming the key ------------------------

@pytest.fixture(autouse=True)
def _private_hash_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGEGEN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hash-cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny exported artifacts by family (generator and class-unet with an INT8 variant)."""
    from tiny_models import export_tiny

    root = tmp_path_factory.mktemp("tiny")
    return {f: export_tiny(f, root / f, int8=f in ("generator", "class-unet"))
            for f in ("generator", "vae-decoder", "unet", "class-unet")}


def _copy(src, tmp_path):
    import shutil

    return Path(shutil.copytree(src, tmp_path / src.name))


def _edit(art, change):
    m = json.loads((art / "edgegen.json").read_text())
    changed = change(m)
    m = m if changed is None else changed
    (art / "edgegen.json").write_text(json.dumps(m))


def _load_error(art) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        Artifact.load(art)
    err = info.value
    assert err.key in str(err) and "expected" in str(err) and "got" in str(err) and "\n" not in str(err)
    return err


def _set(path, value):
    """A change that sets m[path...] = value (None deletes the key)."""
    def change(m):
        *parents, last = path
        node = m
        for k in parents:
            node = node[k]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return change


_DELETE = object()
GEN = ("components", "generator")
CASES = {
    "top level a list": ("generator", lambda m: [], "(top level)"),
    "components not an object": ("generator", _set(("components",), ["generator"]), "components"),
    "component without file": ("generator", _set((*GEN, "file"), _DELETE), "components.generator.file"),
    "shape a string": ("generator", _set((*GEN, "inputs", 0, "shape"), "batch,8"), "components.generator.inputs[0].shape"),
    "negative dim": ("generator", _set((*GEN, "inputs", 0, "shape", 1), -8), "components.generator.inputs[0].shape[1]"),
    "unknown family": ("generator", _set(("family",), "gan"), "family"),
    "schema_version 1.0": ("generator", _set(("schema_version",), 1.0), "schema_version"),
    "schema_version true": ("generator", _set(("schema_version",), True), "schema_version"),
    "negative height": ("generator", _set(("image", "height"), -1), "image.height"),
    "height as float": ("generator", _set(("image", "height"), 8.0), "image.height"),
    "3.6 TiB image": ("generator", lambda m: m["image"].update(height=1 << 20, width=1 << 20),
                      "image (channels x height x width)"),
    "huge latent": ("generator", _set(("latent", "shape"), [1 << 20, 1 << 20]), "latent.shape"),
    "output_range lo == hi": ("generator", _set(("image", "output_range"), [1, 1]), "image.output_range"),
    "output_range NaN": ("generator", _set(("image", "output_range"), [float("nan"), 1]), "image.output_range[0]"),
    "missing latent": ("vae-decoder", _set(("latent",), _DELETE), "latent"),
    "scale_factor 0": ("vae-decoder", _set(("latent", "scale_factor"), 0), "latent.scale_factor"),
    "missing output_range": ("vae-decoder", _set(("image", "output_range"), _DELETE), "image.output_range"),
    "missing scheduler": ("unet", _set(("scheduler",), _DELETE), "scheduler"),
    "scheduler beta_end 2": ("unet", _set(("scheduler", "beta_end"), 2.0), "scheduler"),
    "scheduler 1e12 steps": ("unet", _set(("scheduler", "num_train_timesteps"), 10 ** 12),
                             "scheduler.num_train_timesteps"),
    "class U-Net without conditioning": ("class-unet", _set(("conditioning",), _DELETE), "conditioning"),
    "conditioning num_classes -1": ("class-unet", _set(("conditioning", "num_classes"), -1),
                                    "conditioning.num_classes"),
    "guidance_embedding without timestep_cond": ("class-unet", _set(("guidance_embedding",), {
        "type": "lcm", "input": "timestep_cond", "dim": 256}), "guidance_embedding.input"),
    "guidance_embedding of another kind": ("class-unet", _set(("guidance_embedding",), {
        "type": "flux", "input": "guidance", "dim": 1}), "guidance_embedding.type"),
    "guidance_embedding dim 2": ("class-unet", _set(("guidance_embedding",), {
        "type": "lcm", "input": "class_labels", "dim": 2}), "guidance_embedding.dim"),
    "guidance_embedding dim not the input's": ("class-unet", _set(("guidance_embedding",), {
        "type": "lcm", "input": "class_labels", "dim": 8}), "guidance_embedding.dim"),
    "unknown precision": ("generator", lambda m: m["components"]["generator"]["variants"].update(
        int4=m["components"]["generator"]["variants"].pop("int8")), "components.generator.variants key"),
    "unknown backend": ("generator", lambda m: m["components"]["generator"]["variants"]["int8"].update(
        tflite=m["components"]["generator"]["variants"]["int8"].pop("onnxruntime")),
        "components.generator.variants.int8 key"),
    "file ../../../../etc/passwd": ("generator", _set((*GEN, "file"), "../../../../etc/passwd"),
                                    "components.generator.file"),
    "absolute file": ("generator", _set((*GEN, "file"), "/etc/passwd"), "components.generator.file"),
    "file in a sibling artifact": ("generator", _set((*GEN, "file"), "../other/generator.onnx"),
                                   "components.generator.file"),
    "variant file escapes": ("generator", _set((*GEN, "variants", "int8", "onnxruntime", "file"), "/etc/passwd"),
                             "components.generator.variants.int8.onnxruntime.file"),
    "file not recorded": ("generator", lambda m: m["files"].pop("generator.onnx") and None, "files.generator.onnx"),
    "recorded sha256 not hex": ("generator", _set(("files", "generator.onnx", "sha256"), "x" * 64),
                                "files.generator.onnx.sha256"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_corrupted_manifest_names_the_key(case, tiny, tmp_path):
    family, change, key = CASES[case]
    art = _copy(tiny[family], tmp_path)
    _edit(art, change)
    assert _load_error(art).key == key


def test_stable_diffusion_tokenizer_is_checked(tiny_sd_artifact, tmp_path):
    for change, key in ((_set(("tokenizer",), None), "tokenizer"), (_set(("tokenizer",), _DELETE), "tokenizer"),
                        (_set(("tokenizer", "max_length"), -1), "tokenizer.max_length"),
                        (_set(("tokenizer", "file"), "/etc/passwd"), "tokenizer.file"),
                        (_set(("latent", "scale_factor"), 0), "latent.scale_factor")):
        art = _copy(tiny_sd_artifact, tmp_path)
        _edit(art, change)
        assert _load_error(art).key == key
        import shutil
        shutil.rmtree(art)


def test_symlink_out_of_the_artifact_is_refused(tiny, tmp_path):
    art = _copy(tiny["generator"], tmp_path)
    outside = tmp_path / "elsewhere.onnx"
    (art / "generator.onnx").rename(outside)
    (art / "generator.onnx").symlink_to(outside)
    err = _load_error(art)
    assert err.key == "components.generator.file" and "resolves to" in str(err)


def test_another_models_file_or_a_flipped_byte_is_caught(tiny, tmp_path):
    art = _copy(tiny["generator"], tmp_path)
    other = tiny["unet"] / "unet.onnx"
    (art / "generator.onnx").write_bytes(other.read_bytes())  # another model's ONNX under this name
    assert _load_error(art).key == "files.generator.onnx.size"
    art = _copy(tiny["vae-decoder"], tmp_path / "b")
    target = art / "vae_decoder.onnx"
    Artifact.load(art)  # hashes it once: the cache now knows the good file
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime: only ctime tells
    assert _load_error(art).key == "files.vae_decoder.onnx.sha256"


def test_hashes_recorded_at_publish_serve_the_first_load(tmp_path):
    """A fresh process loads a just-exported artifact without reading its files again (the cache is
    keyed by device, inode, size, mtime and ctime, which the publishing rename keeps)."""
    import subprocess
    import sys

    art = tmp_path / "gan"
    export = f"from tiny_models import export_tiny\nfrom pathlib import Path\nexport_tiny('generator', Path({str(art)!r}))"
    load = ("import edgegen.checksums as c\nfrom edgegen.artifact import Artifact\n"
            "c.sha256_file = lambda p, chunk=0: (_ for _ in ()).throw(AssertionError(f'hashed {p}'))\n"
            f"Artifact.load({str(art)!r})")

    def run(code, cache):
        env = {**os.environ, "EDGEGEN_CACHE_DIR": str(tmp_path / cache),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)

    assert run(export, "cache").returncode == 0
    loaded = run(load, "cache")
    assert loaded.returncode == 0, loaded.stderr
    assert "hashed" in run(load, "empty-cache").stderr  # without the cache it must read the file


def test_artifact_without_recorded_hashes_still_loads_with_paths_confined(tiny, tmp_path):
    art = _copy(tiny["generator"], tmp_path)
    _edit(art, _set(("files",), _DELETE))
    assert Artifact.load(art).spec.files == {}
    _edit(art, _set((*GEN, "file"), "../x.onnx"))
    assert _load_error(art).key == "components.generator.file"


def test_unreadable_json_is_one_artifact_error(tmp_path):
    for content in (b"{", b"\xff\xfe not utf-8", b"[" * 100_000, b'{"schema_version": 1' + b"0" * 5000 + b"}"):
        (tmp_path / "edgegen.json").write_bytes(content)
        with pytest.raises(ArtifactError, match="edgegen.json"):
            Artifact.load(tmp_path)


def test_an_export_never_publishes_an_invalid_manifest(tiny, tmp_path):
    import shutil

    m = json.loads((tiny["generator"] / "edgegen.json").read_text())
    with pytest.raises(ManifestError, match="not published") as info:
        with atomic_artifact(tmp_path / "a") as (staging, manifest):
            shutil.copy(tiny["generator"] / "generator.onnx", staging)
            manifest.update(family="generator", components={"generator": m["components"]["generator"] | {"variants": {}}},
                            latent=m["latent"], image=m["image"] | {"height": -1})
    assert info.value.key == "image.height"
    assert list(tmp_path.iterdir()) == []


def test_concurrent_publishers_one_wins_the_other_says_so(tiny, tmp_path):
    from tiny_models import export_tiny

    out = tmp_path / "gan"
    with atomic_artifact(out) as (staging, manifest):
        with pytest.raises(ArtifactError, match=r"expected no other writer, got another process \(pid \d+\)"):
            export_tiny("generator", out)
        import shutil
        for p in tiny["generator"].iterdir():
            if p.name != "edgegen.json":
                shutil.copy(p, staging / p.name)
        m = json.loads((tiny["generator"] / "edgegen.json").read_text())
        manifest.update({k: v for k, v in m.items() if k not in ("files", "created")})
    assert Artifact.load(out).spec.family.value == "generator"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gan"]  # no lock, no staging


def test_disk_full_is_one_line_and_leaves_nothing(tmp_path):
    """A real write failure (RLIMIT_FSIZE makes writes past 64 KiB fail with EFBIG, as a full disk would)."""
    import subprocess
    import sys

    code = f"""
import resource, signal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, resource.RLIM_INFINITY))
from edgegen.artifact import atomic_artifact
from edgegen.errors import ArtifactError, ManifestError
try:
    with atomic_artifact({str(tmp_path / 'art')!r}) as (staging, manifest):
        (staging / "unet.onnx").write_bytes(bytes(1 << 20))
except ArtifactError as exc:
    print("ERROR", exc)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.startswith("ERROR output") and "nothing was written" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_docs_and_dataclasses_say_the_same():
    """Every key in docs/artifact.md's tables is a field of the dataclass that reads it, and back."""
    import dataclasses
    import re

    from edgegen import manifest

    sections = {"`edgegen.json`": manifest.Manifest, "Component entry": manifest.Component,
                "Variant entry": manifest.Variant, "`latent`": manifest.Latent, "`image`": manifest.Image,
                "`tokenizer`": manifest.Tokenizer, "`conditioning`": manifest.Conditioning,
                "`files` entry": manifest.FileRecord, "`tiny_decoder`": manifest.TinyDecoder,
                "`preview`": manifest.Preview, "`guidance_embedding`": manifest.GuidanceEmbedding}
    documented, heading = {}, None
    for line in (Path(__file__).parents[1] / "docs" / "artifact.md").read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif heading in sections and line.startswith("| `"):
            documented.setdefault(heading, set()).update(re.findall(r"`([a-z_0-9]+)`", line.split("|")[1]))
    for heading, cls in sections.items():
        fields = {f.name for f in dataclasses.fields(cls)} - {"name", "_raw"}
        assert documented.get(heading) == fields, (heading, documented.get(heading), fields)


def test_typed_view_answers_what_readers_ask(tiny):
    from edgegen.types import Backend, Family, Precision

    spec = Artifact.load(tiny["class-unet"]).spec
    unet = spec.component("unet")
    assert spec.family is Family.unet and spec.guided and spec.scale_factor == 1
    assert spec.latent.shape == (1, 8, 8) and spec.conditioning.num_classes == 3 and spec.conditioning.null_class == 3
    assert unet.variant().file == "unet.onnx" and unet.precision is Precision.fp32
    assert unet.variant("int8", "openvino").file == "unet.int8.qdq.onnx"  # OpenVINO runs the QDQ file
    assert unet.variant(Precision.int8, Backend.onnxruntime).backend is Backend.onnxruntime
    assert not unet.has_variant("int8", "tensorrt") and not unet.has_variant("int4")
    assert spec.scheduler_class == "DDPMScheduler" and spec.schedule.num_train_timesteps == 1000
    assert [t.name for t in unet.inputs] == ["sample", "timestep", "class_labels"]
    with pytest.raises(ArtifactError, match="expected a component 'vae_decoder'"):
        spec.component("vae_decoder")
    decoder = Artifact.load(tiny["vae-decoder"]).spec
    assert not decoder.guided and decoder.scale_factor == 2 and decoder.latent.scaling_factor == 0.5
