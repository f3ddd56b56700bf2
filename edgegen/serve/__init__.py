"""Serving edgegen artifacts on Ray: an OpenAI-compatible images service (Ray Serve) and
resumable offline batch jobs (Ray tasks). Needs the ``serve`` extra (``pip install
'edgegen[serve]'``); importing this package does not import Ray.

- :mod:`.requests`: the request fields, checked once (no Ray).
- :mod:`.generate`: requests -> PNG bytes on a pipeline, batch-invariant (no Ray).
- :mod:`.app`: the Ray Serve deployments and ``start``.
- :mod:`.jobs`: ``edgegen run --ray`` offline jobs.
"""

from __future__ import annotations

from .requests import ImageRequest, ModelCard, RequestError, parse_request

__all__ = ["ImageRequest", "ModelCard", "RequestError", "parse_request"]
