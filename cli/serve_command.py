"""`arr serve`: a JSON search API over built indexes (FastAPI + uvicorn)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from arretrieve.server.limits import TOKEN_VARIABLE, ServerLimits

from .options import Device, IndexDir
from .output import console

_LIMITS = {f.name: f for f in dataclasses.fields(ServerLimits)}


def _limit(name: str, flag: str):
    """A flag whose default and help are the `ServerLimits` field's (declared once there)."""
    spec = _LIMITS[name]
    if spec.default == ():
        return typer.Option(None, flag, help=spec.metadata["help"] + " Repeat for several.")
    return typer.Option(spec.default, flag, min=1, help=spec.metadata["help"])


def serve(
    index: Optional[List[str]] = typer.Option(None, "--index", "-i", help="An index to serve (repeat for several; default: every index)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default; 0.0.0.0 listens on every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    index_dir: Optional[Path] = IndexDir,
    device: str = Device,
    max_batch: int = _limit("max_batch", "--max-batch"),
    max_query_chars: int = _limit("max_query_chars", "--max-query-chars"),
    max_body_bytes: int = _limit("max_body_bytes", "--max-body-bytes"),
    max_queued: int = _limit("max_queued", "--max-queued"),
    allowed_host: Optional[List[str]] = _limit("allowed_hosts", "--allowed-host"),
    token: Optional[str] = typer.Option(None, envvar=TOKEN_VARIABLE, show_envvar=True,
                                        help="Bearer token every request but /health and /docs must carry "
                                             "(required beyond loopback; the variable keeps it out of `ps`)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve beyond loopback without a token."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Serve from replicas on a Ray cluster: local (start one here), auto (the running one) or its address (needs the distributed extra)."),
    replicas: Optional[int] = typer.Option(None, "--replicas", help="--ray: replicas of the server, each loading its models once (default 1)."),
) -> None:
    """Serve indexes over HTTP: GET/POST /search, GET /doc/ID, POST /encode and /similarity, GET
    /indexes, /models, /health; docs at /docs."""
    from arretrieve.server import LOOPBACK, serve as run_server

    limits = ServerLimits(max_batch=max_batch, max_query_chars=max_query_chars, max_body_bytes=max_body_bytes,
                          max_queued=max_queued, allowed_hosts=tuple(allowed_host or ()))
    if host not in LOOPBACK:
        console.print(f"listening on {host}: reachable from other machines"
                      + (" (no authentication: --no-auth)" if no_auth else " (token required)"))
    options = dict(host=host, port=port, index_dir=index_dir, device=device, limits=limits, token=token, no_auth=no_auth)
    if ray is None:
        if replicas is not None:
            from arretrieve.errors import ArrError

            raise ArrError("--replicas sets the Ray Serve replicas of --ray; give --ray local, auto or an address")
        run_server(index or [], **options)
        return
    from arretrieve.server.ray_serve import serve_on_ray

    serve_on_ray(index or [], address=ray, replicas=1 if replicas is None else replicas, **options)
