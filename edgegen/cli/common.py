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
    def say(message: str) -> None:
        console.print(f"[dim]{prefix}[/]{message}", highlight=False)
    return say


def stdout(message: str) -> None:
    sys.stdout.write(message + "\n")
