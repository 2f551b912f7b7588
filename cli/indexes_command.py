"""`arr indexes list|show|remove`: the built indexes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .options import IndexDir
from .output import console

app = typer.Typer(help="Built indexes ($ARR_INDEXES, else ./indexes if present, else $ARR_HOME/indexes).", no_args_is_help=True)


@app.command("list")
def list_indexes(index_dir: Optional[Path] = IndexDir) -> None:
    """Name, model, type, size and creation time of each index."""
    from rich import box
    from rich.table import Table

    from arretrieve.index import IndexManifest, IndexStore

    store = IndexStore(index_dir)
    table = Table("name", "model", "type", "vectors", "dim", "created", box=box.SIMPLE, pad_edge=False)
    for name in store.names():
        manifest = IndexManifest.load(store.path(name))
        table.add_row(name, manifest.model, manifest.index_type, str(manifest.count), str(manifest.dim), manifest.created)
    if not store.names():
        console.print(f"no indexes in {store.root}")
        return
    console.print(table)


@app.command("show")
def show(name: Optional[str] = typer.Argument(None), index_dir: Optional[Path] = IndexDir) -> None:
    """The manifest: model and fingerprint, prompts, dtype, index parameters, corpora."""
    from dataclasses import asdict

    from arretrieve.index import IndexManifest, IndexStore

    console.print_json(json.dumps(asdict(IndexManifest.load(IndexStore(index_dir).resolve(name))), ensure_ascii=False))


@app.command("remove")
def remove(name: str, index_dir: Optional[Path] = IndexDir) -> None:
    """Delete an index folder."""
    from arretrieve.index import IndexStore

    IndexStore(index_dir).remove(name)
    console.print(f"removed {name}")
