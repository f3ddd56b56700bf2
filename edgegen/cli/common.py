"""Helpers every command shares: error reporting, option parsing, the console."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from enum import Enum
from typing import Iterator

import typer
from rich.console import Console

from ..errors import EdgegenError

console = Console(stderr=True)
state = {"debug": False}


class Backend(str, Enum):
    openvino = "openvino"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


@contextmanager
def reported() -> Iterator[None]:
    """Turn edgegen errors into one line on stderr and exit status 1 (``--debug``: the traceback)."""
    try:
        yield
    except (EdgegenError, FileNotFoundError, ValueError) as exc:
        if state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None


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


def progress_printer(prefix: str = ""):
    """A ``Callable[[str], None]`` that prints each message on stderr (no markup interpretation)."""
    def say(message: str) -> None:
        console.print(f"{prefix}{message}", highlight=False, markup=False)
    return say


@contextmanager
def progress_bar() -> Iterator["ProgressCallback"]:
    """A :data:`edgegen.progress.ProgressCallback` drawn as rich progress bars with ETA on stderr.

    Each distinct stage label with a total gets its own bar with elapsed time and ETA; a call
    with ``total=None`` (a message) is printed whole above the bars.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from ..progress import ProgressCallback  # noqa: F401  (the type this yields)

    columns = (SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
               TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    tasks: dict[str, int] = {}
    with Progress(*columns, console=console, transient=False) as bar:
        def report(stage: str, done: int = 0, total: int | None = None) -> None:
            if total is None and stage not in tasks:
                # A message: printed whole above the bars (a task line would be cut to the
                # terminal's width and spin forever).
                bar.console.print(stage, markup=False, highlight=False, soft_wrap=True)
                return
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)
            if total is not None and done >= total:
                bar.stop_task(tasks[stage])
        yield report


def stdout(message: str) -> None:
    sys.stdout.write(message + "\n")
