"""The CLI's error path: one plain, unwrapped line per failure, documented exit codes.

Real components throughout: the console script in a subprocess (stderr piped, as in a log), a tiny
torch generator exported by ``edgegen export``, real ONNX Runtime / OpenVINO / tokenizers failures.
Bad *run options* are tests/test_hostile.py's; this module covers how failures are printed.
"""

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgegen.cli.common import DISTRIBUTIONS, EXTRAS, describe

ROOT = Path(__file__).resolve().parents[1]

GENERATOR = """
import torch

class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 64)

    def forward(self, z):
        return torch.tanh(self.fc(z)).reshape(-1, 1, 8, 8)

def load(weights=None):
    torch.manual_seed(0)
    return Tiny().eval()
"""


def edgegen(*args, blocked=(), timeout=300) -> subprocess.CompletedProcess:
    """The console script's entry point in a fresh interpreter; ``blocked`` modules fail to import."""
    code = textwrap.dedent(f"""
        import sys
        for name in {list(blocked)!r}:
            sys.modules[name] = None
        sys.argv = ["edgegen", *{[str(a) for a in args]!r}]
        from edgegen.cli import main
        main()
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 1) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def gan(tmp_path_factory):
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("gan")
    (d / "tiny.py").write_text(GENERATOR)
    proc = edgegen("export", "--module", f"{d / 'tiny.py'}:load", "--kind", "generator", "--latent-shape", "8",
                   "--image-shape", "1,8,8", "--output-range", "-1,1", "--out", d / "art")
    assert proc.returncode == 0, proc.stderr
    return d / "art"


def test_version():
    proc = edgegen("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == __import__("edgegen").__version__


def test_usage_error_exits_2_in_plain_text():
    proc = edgegen("run", "--bogus")
    assert proc.returncode == 2 and "No such option: --bogus" in proc.stderr
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr  # click's text, not a rich panel


def test_markup_in_a_path_prints_literally_and_long_lines_are_not_wrapped(tmp_path):
    """A path with rich markup (`[/x]`, `[bold]`), an emoji code and double blanks, 200+ characters, piped."""
    weird = tmp_path / ("a" * 150) / "[bold]x[/x]:cat:  two  spaces"
    weird.mkdir(parents=True)
    line = one_error_line(edgegen("bench", weird))
    assert str(weird) in line and len(line) > 200


def test_the_pip_extra_keeps_its_brackets(gan):
    tensorrt_installed = subprocess.run([sys.executable, "-c", "import tensorrt"], capture_output=True).returncode == 0
    if tensorrt_installed:
        pytest.skip("TensorRT is installed here; the message is for machines without it")
    line = one_error_line(edgegen("run", gan, "--backend", "tensorrt", "--out", gan.parent / "o"))
    assert "pip install 'edgegen[tensorrt]'" in line


def test_out_is_a_file_is_one_line(gan, tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a directory")
    line = one_error_line(edgegen("run", gan, "--out", target))
    assert str(target) in line


@pytest.mark.parametrize("command,blocked,extra", [
    (["bench", "."], ["matplotlib"], "bench"),
    (["bench", "."], ["skimage"], "bench"),
    (["demo", "--out", "x"], ["torch"], "export,openvino,bench"),
    (["export", "--module", "m.py:load", "--kind", "generator", "--out", "x"], ["torch"], "export"),
])
def test_a_missing_extra_is_named(tmp_path, command, blocked, extra):
    proc = edgegen(*command, blocked=blocked)
    line = one_error_line(proc)
    assert f"pip install 'edgegen[{extra}]'" in line, line
    assert not (tmp_path / "x").exists()


def test_extras_table_matches_pyproject():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, extra in EXTRAS.items():
        names = [r.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower()
                 for r in extras[extra]]
        assert DISTRIBUTIONS.get(module, module) in names, (module, extra, names)


def test_interrupt_exits_130_with_one_line(gan, tmp_path):
    """SIGINT in the middle of a run (images already being written): exit 130, one line
    `error: interrupted`, no traceback. The signal is sent once the first PNG exists, so it
    lands while the command works (a tiny model's bench can end before a timed signal)."""
    out = tmp_path / "images"
    proc = subprocess.Popen([sys.executable, "-c", "from edgegen.cli import main; main()", "run", str(gan),
                             "--num-images", "100000", "--batch-size", "16", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a suite started in the background inherits SIGINT ignored (POSIX shells
                            # do that to background jobs): give the command its Ctrl-C back
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not any(out.glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "error: interrupted"


def _failing_model(path: Path) -> Path:
    """x (N,) reshaped to a shape given at run time: a wrong shape fails inside the engine."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
                               helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)
    return path


@pytest.mark.parametrize("backend,name", [("onnxruntime", "ONNX Runtime"), ("openvino", "OpenVINO")])
def test_engine_run_failure_is_one_line_naming_the_engine(tmp_path, backend, name):
    pytest.importorskip(backend)
    from edgegen.runtimes import load_engine

    engine = load_engine(_failing_model(tmp_path / "m.onnx"), backend)
    with pytest.raises(Exception) as info:
        engine({"x": np.zeros(6, np.float32), "shape": np.array([4, 4], np.int64)})
    message, code = describe(info.value)
    assert code == 1 and "\n" not in message and message.startswith(f"{name} failed"), message
    assert len(message) < 600


def test_tokenizer_failure_is_one_line(tmp_path):
    from edgegen.tokenizer import ClipTokenizer

    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(Exception) as info:
        ClipTokenizer(tmp_path / "tokenizer.json", max_length=8, pad_id=0)
    message, code = describe(info.value)
    assert code == 1 and "\n" not in message and message.startswith("the tokenizer failed"), message


def test_disk_full_and_memory_error_are_one_line():
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError) as info:
        with open("/dev/full", "w") as f:
            f.write("x" * 10)
            f.flush()
    assert info.value.errno == errno.ENOSPC
    assert describe(info.value)[0].startswith("no space left on device")
    with pytest.raises(MemoryError) as info:
        np.empty(2**62, np.uint8)
    message, code = describe(info.value)
    assert code == 1 and message.startswith("out of memory") and "\n" not in message
