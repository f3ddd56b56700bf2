"""Helpers every command shares: the error path, option parsing, the console.

Messages are printed as plain text: never interpreted as rich markup or emoji codes (a path with
``[/x]`` or ``:cat:`` prints as given), never hard-wrapped (a log piped to a file keeps one line
per message). Exit codes: 0 success, 1 an error the user can act on (one line on stderr; the
traceback with ``--debug``), 2 a usage error (click's message), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import errno
import importlib.util
import sys
import traceback
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import typer
from rich.console import Console
from rich.text import Text

from ..errors import EdgegenError

if TYPE_CHECKING:
    from ..progress import ProgressCallback

console = Console(stderr=True, highlight=False, markup=False, emoji=False, soft_wrap=True)
state = {"debug": False, "command": None}

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130  # usage errors exit 2 (click's own status)

# Import name -> the extra that installs it (tests/test_cli_errors.py holds this to pyproject.toml).
EXTRAS = {"torch": "export", "onnx": "export", "onnxscript": "export", "diffusers": "export",
          "transformers": "export", "safetensors": "export", "skimage": "metrics", "scipy": "metrics",
          "openvino": "openvino", "nncf": "openvino", "matplotlib": "bench", "tensorrt": "tensorrt",
          "ray": "serve", "fastapi": "serve"}
# Import names that differ from the distribution's name on PyPI.
DISTRIBUTIONS = {"skimage": "scikit-image"}
# Where a foreign exception came from (the package of the deepest frame) -> the name users know.
_ORIGINS = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT", "tokenizers": "the tokenizer",
            "edgegen.tokenizer": "the tokenizer", "PIL": "Pillow", "numpy": "numpy"}
_EDGEGEN = Path(__file__).resolve().parents[1]


class Backend(str, Enum):
    openvino = "openvino"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the blanks around them) turned into single spaces."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def error(message: str) -> None:
    """Print ``error: MESSAGE`` on one line of stderr, the prefix in red on a terminal, the message as given."""
    console.print(Text.assemble(("error: ", "bold red"), one_line(message)), soft_wrap=True)


def _command() -> str:
    return f"edgegen {state['command']}" if state["command"] else "edgegen"


def _origin(exc: BaseException) -> tuple[str, str | None]:
    """(the package of the deepest frame, the deepest edgegen module) of a foreign exception."""
    package, module = None, None
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(_EDGEGEN):
            module = module or ".".join(("edgegen", *path.relative_to(_EDGEGEN).with_suffix("").parts))
            package = package or module
        elif package is None:
            parts = path.parts
            site = [i for i, p in enumerate(parts) if p in ("site-packages", "dist-packages")]
            package = parts[site[-1] + 1].removesuffix(".py") if site and len(parts) > site[-1] + 1 else None
    return package or "edgegen", module


def _foreign(exc: BaseException) -> str:
    """One line for an exception from a library edgegen calls (an engine, the tokenizer, ...)."""
    package, module = _origin(exc)
    who = _ORIGINS.get(package) or _ORIGINS.get(package.split(".")[0], package)
    where = f" (in {module})" if module and module != package else ""
    text = one_line(str(exc)) or "no message"
    text = text if len(text) <= 400 else text[:400] + " ..."
    return f"{who} failed{where}: {type(exc).__name__}: {text} (run with --debug for the traceback)"


def _os_error(exc: OSError) -> str:
    names = " -> ".join(f"'{n}'" for n in (exc.filename, exc.filename2) if n is not None)
    if exc.errno == errno.ENOSPC:
        return f"no space left on device{' writing ' + names if names else ''}"
    if exc.strerror:
        return f"{exc.strerror}{': ' + names if names else ''}"
    return str(exc)


def missing_module(exc: ModuleNotFoundError) -> str:
    """'edgegen bench needs matplotlib, which is not installed: pip install 'edgegen[bench]''."""
    top = (exc.name or "").split(".")[0]
    if top in EXTRAS:
        return (f"{_command()} needs {DISTRIBUTIONS.get(top, top)}, which is not installed: "
                f"pip install 'edgegen[{EXTRAS[top]}]'")
    return f"{_command()} needs the Python module '{exc.name}', which is not installed"


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and the exit status for an exception that reached the CLI."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, EdgegenError):
        return str(exc), EXIT_ERROR
    if isinstance(exc, ModuleNotFoundError):
        return missing_module(exc), EXIT_ERROR
    if isinstance(exc, OSError):
        return _os_error(exc), EXIT_ERROR
    if isinstance(exc, MemoryError):
        detail = f" ({exc})" if str(exc) else ""
        return f"out of memory{detail}: ask for fewer or smaller images", EXIT_ERROR
    if isinstance(exc, ValueError) and _origin(exc)[0].startswith("edgegen"):
        return str(exc), EXIT_ERROR
    return _foreign(exc), EXIT_ERROR


@contextmanager
def reported() -> Iterator[None]:
    """Turn any failure into one line on stderr and its exit status (``--debug``: the traceback).

    Typer's own exceptions (usage errors, ``typer.Exit``) pass through untouched.
    """
    try:
        yield
    except (typer.TyperException, typer.Exit, typer.Abort):
        raise
    except (Exception, KeyboardInterrupt) as exc:
        if state["debug"]:
            raise
        message, code = describe(exc)
        error(message)
        raise typer.Exit(code) from None


def require_extras(command: str, *extras: str, included: tuple[str, ...] = ("metrics",)) -> None:
    """Refuse up front, in one line, when a command's extras are not installed.

    ``extras`` are what the user installs; ``included`` what those extras bring along (checked
    too, never suggested: ``pip install 'edgegen[bench]'`` installs the metrics extra).

    Raises:
        EdgegenError: naming the missing packages and the ``pip install 'edgegen[...]'`` that adds them.
    """
    wanted = set(extras) | set(included)
    missing = [DISTRIBUTIONS.get(m, m) for m, extra in EXTRAS.items()
               if extra in wanted and importlib.util.find_spec(m) is None]
    if missing:
        names = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise EdgegenError(f"edgegen {command} needs {names}, not installed: "
                           f"pip install 'edgegen[{','.join(extras)}]'")


def parse_ints(value: str | None, flag: str, count: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
    """'1,28,28' -> (1, 28, 28); raises typer.BadParameter naming the flag and what was given."""
    if value is None:
        return None
    try:
        out = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got '{value}'", param_hint=flag) from None
    if count and len(out) not in count or any(v <= 0 for v in out):
        raise typer.BadParameter(f"expected {' or '.join(map(str, count or ()))} positive integers, got '{value}'",
                                 param_hint=flag)
    return out


def parse_range(value: str, flag: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected LO,HI, got '{value}'", param_hint=flag) from None
    if not lo < hi:
        raise typer.BadParameter(f"expected LO < HI, got '{value}'", param_hint=flag)
    return lo, hi


@contextmanager
def progress_bar() -> Iterator["ProgressCallback"]:
    """A :data:`edgegen.progress.ProgressCallback` drawn as rich progress bars with ETA on stderr.

    Each distinct stage label with a total gets its own bar with elapsed time and ETA; a call
    with ``total=None`` for a new label (a message) is printed whole, as plain text, above the bars.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    tasks: dict[str, int] = {}
    # Bars only on a terminal: a piped log gets the message lines, not a final snapshot of bars.
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as bar:
        def report(stage: str, done: int = 0, total: int | None = None) -> None:
            if total is None and stage not in tasks:
                # A message: printed whole above the bars (a task line would be cut to the
                # terminal's width and spin forever).
                bar.console.print(Text(stage), soft_wrap=True)
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)
            if total is not None and done >= total:
                bar.stop_task(tasks[stage])
        yield report


def stdout(message: str) -> None:
    sys.stdout.write(message + "\n")
