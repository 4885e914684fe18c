"""`bertkit serve --ray --replicas N`: the same app as N Ray Serve replicas behind Ray's HTTP proxy.

Each replica builds the app and loads its own copy of the models (the builder runs on the replica,
so no model is pickled); Ray's proxy spreads requests over the replicas and checks their health.
Ray is an optional extra (`pip install "ray[serve]"`), imported only here.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from bertkit.errors import ConfigError
from bertkit.serve.app import ServeSettings, create_app

logger = logging.getLogger("bertkit")


def _ray_serve():
    try:
        from ray import serve
    except ImportError:
        raise ConfigError("--ray needs Ray Serve: pip install 'bertkit[ray]'") from None
    return serve


def build_app(models: dict[str, Path], settings: ServeSettings, pipeline_options: dict, threads: int | None):
    """The Ray Serve application: N replicas of `create_app` over `models` (NAME -> directory)."""
    serve = _ray_serve()

    def build():  # runs on each replica
        import torch

        from bertkit.inference.pipeline import pipeline

        if threads is not None:
            torch.set_num_threads(threads)
        return create_app({name: (lambda path=path: pipeline(model=str(path), **pipeline_options))
                           for name, path in models.items()}, settings)

    return serve.deployment(serve.ingress(build)(), name="bertkit")


def run(models: dict[str, Path], settings: ServeSettings, pipeline_options: dict, threads: int | None, host: str,
        port: int, replicas: int, drain_timeout: float) -> None:
    """Start a local Ray instance, deploy, serve until SIGTERM / SIGINT, then shut Ray Serve down
    (each replica finishes its requests in flight, up to `drain_timeout`)."""
    serve = _ray_serve()
    import ray

    deployment = build_app(models, settings, pipeline_options, threads).options(
        num_replicas=replicas, graceful_shutdown_timeout_s=drain_timeout,
        ray_actor_options={"num_cpus": 0})  # the replicas share the cores; torch threads decide the rest
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment.bind(), name="bertkit", route_prefix="/")
        logger.info("Ray Serve: %d replicas on http://%s:%d", replicas, host, port)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        serve.shutdown()
    finally:
        ray.shutdown()
