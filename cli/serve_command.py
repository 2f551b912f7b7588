"""`arr serve`: a JSON search API over built indexes (FastAPI + uvicorn)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import Device, IndexDir
from .output import console


def serve(
    index: Optional[List[str]] = typer.Option(None, "--index", "-i", help="An index to serve (repeat for several; default: every index)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default; 0.0.0.0 listens on every interface)."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port to listen on."),
    index_dir: Optional[Path] = IndexDir,
    device: str = Device,
) -> None:
    """Serve indexes over HTTP: GET/POST /search, GET /indexes, /models, /health; docs at /docs."""
    from arretrieve.server import LOOPBACK, serve as run_server

    if host not in LOOPBACK:
        console.print(f"listening on {host}: reachable from other machines (no authentication)")
    run_server(index or [], host=host, port=port, index_dir=index_dir, device=device)
