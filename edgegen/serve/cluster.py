"""Joining or starting the Ray cluster that serving and offline jobs run on."""

from __future__ import annotations

from ..errors import BackendUnavailableError


def require_ray(address: str | None = None):
    """The ``ray`` module, or BackendUnavailableError naming the ``serve`` extra.

    ``address`` None means a local cluster will be started: Ray is then told, before it is first
    imported, to keep every server on the loopback address (127.0.0.1) instead of this machine's
    network address (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: Ray's switch for single-machine
    use, read at import). Joining a cluster (``address`` given) leaves Ray's default.
    """
    import os

    if not address:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError("ray", "serve", "edgegen serve and `edgegen run --ray` run on Ray") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None,
            object_store_memory: int | None = None) -> None:
    """``ray.init`` once per process: join the cluster at ``address`` (``host:port`` of a ``ray start
    --head``, or ``auto``), else start a local one on this machine (``num_cpus``, object store size in
    bytes). A local cluster binds to the loopback address only (``127.0.0.1``), never to the
    machine's network interfaces. Ray's own dashboard and usage reporting stay off."""
    import os

    ray = require_ray(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
