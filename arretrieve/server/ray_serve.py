"""`arr serve --ray ADDRESS --replicas N`: the `arr serve` application on Ray Serve replicas.

Each replica is an actor that builds the same application `arr serve` runs (app.build_app): its
indexes opened and its models loaded once, at start, with its own model thread and limits. Ray
Serve's HTTP proxy spreads requests over the replicas, so the API, the responses, the token and
Host checks are those of `arr serve`, and queries per second grow with replicas until the
cluster's cores or GPUs run out. Each replica reserves one GPU where the cluster has GPUs, else an
equal share of its CPUs. The index folder and the model must be readable at the same path on every
node (one machine, or a shared filesystem).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Sequence

from ..cluster import actor_share, connect, ray_module, use_reserved_cpus
from ..errors import ArrError
from ..index import IndexStore
from ..registry import Registry
from .app import build_app, check_exposure
from .limits import ServerLimits

log = logging.getLogger(__name__)

APP_NAME = "arretrieve"


def replica_app(names: Sequence[str], index_root: str, device: str, limits: ServerLimits, token: str | None,
                host: str):
    """Built by each replica when it starts (Ray Serve calls it there, not in the driver)."""
    reserved = use_reserved_cpus()
    return build_app(names, IndexStore(Path(index_root)), Registry(), reserved if device == "auto" else device,
                     limits, token, host)


def deploy(names: Sequence[str], *, replicas: int, host: str = "127.0.0.1", port: int = 8000,
           index_dir: Path | None = None, device: str = "auto", limits: ServerLimits | None = None,
           token: str | None = None, no_auth: bool = False) -> None:
    """Start Ray Serve's proxy on `host:port` and `replicas` replicas of the app on the connected
    cluster; returns once every replica has loaded its models and answers."""
    check_exposure(host, token, no_auth)
    if replicas < 1:
        raise ArrError("--replicas must be at least 1")
    ray, serve = ray_module(), _serve_module()
    store = IndexStore(index_dir)
    names = list(names) or store.names()
    for name in names or [None]:  # an unknown index is one line here, not a replica failing to start
        store.resolve(name)
    gpus, cpus = actor_share(ray, replicas)
    serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
    settings = (names, str(store.root.resolve()), device, limits or ServerLimits(), token, host)

    def builder():  # Ray Serve takes a plain function for a builder (a partial would pass for an ASGI app)
        return replica_app(*settings)

    deployment = serve.deployment(serve.ingress(builder)(), name=APP_NAME, num_replicas=replicas,
                                  ray_actor_options={"num_cpus": cpus, "num_gpus": gpus,
                                                     "runtime_env": {"env_vars": _home_variables()}},
                                  max_constructor_retry_count=1)
    try:
        serve.run(deployment.bind(), name=APP_NAME, route_prefix="/")
    except RuntimeError as exc:  # a replica failed to start: its own error's last line
        lines = str(exc).strip().splitlines()
        raise ArrError(f"the replicas did not start: {lines[-1] if lines else type(exc).__name__}") from None
    log.info("%d Ray Serve replicas (%s each) serving %s on http://%s:%d", replicas,
             "1 GPU" if gpus else f"{cpus} CPUs", ", ".join(names), host, port)


def _serve_module():
    try:
        from ray import serve
    except ImportError:
        raise ArrError("arr serve --ray needs Ray Serve: pip install 'arretrieve[distributed]'") from None
    return serve


def _home_variables() -> dict[str, str]:
    """The toolkit's home and index variables, so replicas on any node read the same registry."""
    return {name: os.environ[name] for name in ("ARR_HOME", "ARR_INDEXES", "HF_HOME") if name in os.environ}


def serve_on_ray(names: Sequence[str], *, address: str, replicas: int, **options) -> None:
    """`arr serve --ray`: deploy, then serve until interrupted; the replicas go with this command."""
    ray, serve = ray_module(), _serve_module()
    connected = connect(ray, address)
    try:
        deploy(names, replicas=replicas, **options)
        log.info("Ctrl-C stops the replicas")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        if connected:
            ray.shutdown()
