"""Progress reporting: the library never prints; long work calls a :data:`ProgressCallback`.

``progress(stage, done, total)``: ``stage`` is a short human label ("calibration: recording
U-Net feeds"), ``done`` the units finished so far, ``total`` the units expected (None when
unknown: a message or a spinner). The CLI turns these calls into rich progress bars with ETA
(``edgegen.cli.common.progress_bar``); Python users pass their own callable or nothing.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, int, Optional[int]], None]


def silent(stage: str, done: int = 0, total: int | None = None) -> None:
    """The default callback: report nothing."""


def substage(progress: ProgressCallback | None, prefix: str) -> ProgressCallback:
    """A callback that prefixes every stage label (``"unet: " + stage``) before passing it on."""
    report = progress or silent
    return lambda stage, done=0, total=None: report(f"{prefix}{stage}", done, total)
