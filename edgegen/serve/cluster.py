"""Joining or starting the Ray cluster that serving and offline jobs run on."""

from __future__ import annotations

from ..errors import BackendUnavailableError


def require_ray():
    """The ``ray`` module, or BackendUnavailableError naming the ``serve`` extra."""
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("ray", "serve", "edgegen serve and `edgegen run --ray` run on Ray") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None,
            object_store_memory: int | None = None) -> None:
    """``ray.init`` once per process: join the cluster at ``address`` (``host:port`` of a ``ray start
    --head``, or ``auto``), else start a local one on this machine (``num_cpus``, object store size in
    bytes). Ray's own dashboard and usage reporting stay off."""
    import os

    ray = require_ray()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
