"""`arr index CORPUS`: encode a corpus with a registry model and build a FAISS index."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import console


def index(
    corpus: Path = typer.Argument(..., help="A BEIR folder (corpus.jsonl inside) or a BEIR-style .jsonl file."),
    name: Optional[str] = typer.Option(None, help="Index name (default: the corpus folder or file name)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry model (default: `arr models default`)."),
    index_dir: Optional[Path] = typer.Option(None, help="Where indexes live (default ./indexes or $ARR_INDEXES)."),
    batch_size: int = typer.Option(16, help="Texts per forward pass (halved automatically on out-of-memory)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    dtype: Optional[str] = typer.Option(None, help="Override the model's dtype: float32, bfloat16, float16."),
    overwrite: bool = typer.Option(False, help="Replace an existing index of that name."),
) -> None:
    """Encode CORPUS and build an exact (flat, inner-product) FAISS index under the index folder."""
    from arretrieve.index import IndexStore, build_index

    store = IndexStore(index_dir)
    manifest = build_index(
        corpus,
        name=name,
        model=model,
        store=store,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        overwrite=overwrite,
        show_progress=True,
    )
    console.print(
        f"indexed {manifest.count} documents with {manifest.model} ({manifest.encoder['dtype']}, "
        f"dim {manifest.dim}) → {store.path(manifest.name)}"
    )
