"""`arr search "query"`: top-k documents from an index, with the model that built it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .output import console


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def search(
    query: str = typer.Argument(..., help="The query text."),
    index: Optional[str] = typer.Option(None, "--index", "-i", help="Index name (default: the only index)."),
    k: int = typer.Option(10, "-k", min=1, help="How many results."),
    index_dir: Optional[Path] = typer.Option(None, help="Where indexes live (default ./indexes or $ARR_INDEXES)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {rank, score, id, title, text}."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
) -> None:
    """Search an index and print rank, score, id, title and a snippet."""
    from arretrieve.errors import ArrError
    from arretrieve.index import IndexStore, Searcher

    if not query.strip():
        raise ArrError("empty query")
    searcher = Searcher(IndexStore(index_dir).resolve(index), device=device)
    hits = searcher.search([query], k=k)[0]
    if as_json:
        print(json.dumps([hit.__dict__ for hit in hits], ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    table = Table("rank", "score", "id", "title", "snippet", title=f"{searcher.manifest.name} · {searcher.manifest.model}")
    for hit in hits:
        table.add_row(str(hit.rank), f"{hit.score:.4f}", hit.id, hit.title, _snippet(hit.text))
    console.print(table)
