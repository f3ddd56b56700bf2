"""Property-based fuzz of the manifest reader (Hypothesis) over mutations of real artifacts.

Each example takes the ``edgegen.json`` of a real exported artifact (Stable Diffusion, generator
with an INT8 variant, VAE decoder, unconditional U-Net, class-conditional U-Net with an INT8
variant), deletes keys, replaces values by arbitrary JSON or by known-nasty values (negative and
huge sizes, NaN, ``1.0`` for ints, paths out of the artifact ...), one to three times, and loads
it: :meth:`Artifact.load` must either succeed or raise an ``edgegen.errors`` type, never a raw
``KeyError`` / ``TypeError`` / ``AttributeError`` / ``IndexError``.

Default run: ``DEFAULT_EXAMPLES`` per family, derandomized (the same examples every run);
``-m slow``: ``SLOW_EXAMPLES`` per family, random, and every manifest that loads is also run as a
pipeline (one image, one step): the pipelines read the typed manifest only, so they too may raise
nothing but edgegen errors.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest

hypothesis = pytest.importorskip("hypothesis")
pytest.importorskip("torch")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgegen.artifact import Artifact  # noqa: E402
from edgegen.errors import EdgegenError  # noqa: E402

FAMILIES = ("stable-diffusion", "generator", "vae-decoder", "unet", "class-unet")
DEFAULT_EXAMPLES = 80
SLOW_EXAMPLES = 2000
# Free-form records the reader keeps as they are: mutate them as a whole, not leaf by leaf.
OPAQUE = ("parity", "source", "quantization", "calibration", "speed", "source_sha256")
NASTY = [None, True, False, 0, -1, 1.0, 2.5, 1e300, float("nan"), float("inf"), -float("inf"), 2 ** 40, 10 ** 30,
         "", "x", "batch", "../../../../etc/passwd", "/etc/passwd", "../other/generator.onnx", "a\\b", [], {},
         [1, 1], [0, 0], [-1, 2 ** 40], [1 << 20, 1 << 20], ["batch"], {"file": "/etc/passwd"}, "0" * 64]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8)


def _paths(node, prefix=()) -> list[tuple]:
    """Key paths of every value below ``node`` (not inside OPAQUE records)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out = []
    for key, value in items:
        out.append((*prefix, key))
        if key not in OPAQUE:
            out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated(draw, base):
    """``base`` with one to three keys deleted or replaced (or the whole document replaced)."""
    if draw(st.integers(0, 49)) == 0:
        return draw(json_values)
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        targets = _paths(doc)
        if not targets:
            break
        *parents, key = draw(st.sampled_from(targets))
        node = doc
        for k in parents:
            node = node[k]
        how = draw(st.sampled_from(("delete", "json", "nasty", "nasty", "rename")))
        if how == "delete" or (how == "rename" and isinstance(node, list)):
            del node[key]
        elif how == "rename":
            node[draw(st.sampled_from(("x", "int8", "tensorrt", "files", "file")) | st.text(max_size=6))] = node.pop(key)
        else:
            # deep copies: a later mutation of this example must not edit NASTY itself
            node[key] = copy.deepcopy(draw(json_values if how == "json" else st.sampled_from(NASTY)))
    return doc


@pytest.fixture(scope="module")
def artifacts(tiny_sd_artifact, tmp_path_factory):
    """Writable copies of one real artifact per family."""
    from tiny_models import export_tiny

    root = tmp_path_factory.mktemp("fuzz")
    arts = {"stable-diffusion": shutil.copytree(tiny_sd_artifact, root / "sd")}
    for family in FAMILIES[1:]:
        arts[family] = export_tiny(family, root / family, int8=family in ("generator", "class-unet"))
    return arts


def _generate(art) -> None:
    """Load the artifact as a pipeline (ONNX Runtime) and make one image with one step."""
    from edgegen import Pipeline
    from edgegen.pipelines.diffusion import DiffusionPipeline

    pipe = Pipeline.load(art, backend="onnxruntime")
    pipe(num_inference_steps=1) if isinstance(pipe, DiffusionPipeline) else pipe()


def _fuzz(art, examples: int, derandomize: bool, generate: bool = False) -> dict:
    manifest = art / "edgegen.json"
    original = manifest.read_text()
    outcomes = {"loaded": 0, "refused": 0, "generated": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck))
    @given(mutated(json.loads(original)))
    def load_never_raises_a_raw_error(doc):
        manifest.write_text(json.dumps(doc))
        try:
            Artifact.load(art)
            outcomes["loaded"] += 1
            if generate:  # what loads must also run, or fail with an edgegen error (the readers)
                _generate(art)
                outcomes["generated"] += 1
        except EdgegenError:
            outcomes["refused"] += 1

    try:
        load_never_raises_a_raw_error()
    finally:
        manifest.write_text(original)
    Artifact.load(art)
    return outcomes


@pytest.mark.parametrize("family", FAMILIES)
def test_manifest_reader_only_raises_edgegen_errors(artifacts, family):
    outcomes = _fuzz(artifacts[family], DEFAULT_EXAMPLES, derandomize=True)
    assert outcomes["refused"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_manifest_reader_only_raises_edgegen_errors_long(artifacts, family):
    outcomes = _fuzz(artifacts[family], SLOW_EXAMPLES, derandomize=False, generate=True)
    print(family, outcomes)
