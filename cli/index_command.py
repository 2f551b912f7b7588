"""`arr index CORPUS`: encode a corpus with a registry model and build a FAISS index."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import BatchSize, Device, Dtype, IndexDir
from .output import console, parse_size


def index(
    corpus: Optional[Path] = typer.Argument(None, help="BEIR folder, .jsonl(.gz)/.json/.csv/.tsv/.parquet file, or a folder of .txt/.md files."),
    name: Optional[str] = typer.Option(None, help="Index name (default: the corpus folder or file name)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry model (default: `arr models default`)."),
    index_type: str = typer.Option("auto", "--index-type", help="auto, flat, hnsw, hnsw-pca, ivf-flat, ivf-pq, sq-fp16 or sq-int8."),
    memory_budget: Optional[str] = typer.Option(None, help="Memory the index may take, e.g. 2GB: auto picks a type that fits, IVF types over it build their lists on disk, other types over it are refused."),
    add: bool = typer.Option(False, "--add", help="Append CORPUS to the existing index NAME (same model)."),
    upsert: bool = typer.Option(False, "--upsert", help="As --add, and a document whose id is in the index replaces it."),
    delete: Optional[Path] = typer.Option(None, "--delete", help="Remove from index NAME the documents whose ids this file lists, one per line."),
    id_field: str = typer.Option("_id", help="Id field of jsonl/json/csv/parquet rows."),
    text_field: str = typer.Option("text", help="Text field of jsonl/json/csv/parquet rows."),
    title_field: str = typer.Option("title", help="Title field (optional in rows)."),
    metadata_field: Optional[List[str]] = typer.Option(None, "--metadata-field", help="A row field to store with each document, for `arr search --where` (repeat for several; --add keeps the index's)."),
    chunk_words: Optional[int] = typer.Option(None, help="Cut documents into chunks of this many words (ids doc#0, doc#1…)."),
    chunk_overlap: int = typer.Option(0, help="Words shared by consecutive chunks."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip (and count) malformed, duplicate or empty rows instead of stopping."),
    index_dir: Optional[Path] = IndexDir,
    batch_size: int = BatchSize,
    device: str = Device,
    devices: Optional[str] = typer.Option(None, help="Encode with one process per device, e.g. cuda:0,cuda:1."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Encode on a Ray cluster: local (start one here), auto (the running one) or its address (needs the distributed extra)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="--ray: encoding actors, each loading the model once (default: one per GPU, or one)."),
    dtype: Optional[str] = Dtype,
    shard_size: int = typer.Option(4096, min=1, help="Documents per resumable shard."),
    seed: int = typer.Option(0, help="Seed of the training sample for trained index types."),
    hnsw_m: Optional[int] = typer.Option(None, help="HNSW links per vector (default 32)."),
    ef_construction: Optional[int] = typer.Option(None, help="HNSW build search depth (default 80, hnsw-pca 200): higher gives better recall, slower builds."),
    reduced_dim: Optional[int] = typer.Option(None, help="hnsw-pca: dimension of the graph's vectors (default a sixth of the model's, at least 32)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing index of that name."),
    no_bm25: bool = typer.Option(False, "--no-bm25", help="Build no BM25 side (then only --mode dense searches it)."),
) -> None:
    """Encode CORPUS (resumable: re-run after an interruption) and build a FAISS index."""
    from arretrieve.corpus import Chunking, FieldNames
    from arretrieve.encoding import EncodingOptions
    from arretrieve.errors import ArrError
    from arretrieve.index import IndexSpec, IndexStore, add_to_index, build_index

    store = IndexStore(index_dir)
    if delete is not None:
        if corpus is not None or add or upsert:
            raise ArrError("--delete removes documents; give no CORPUS, --add or --upsert with it")
        from arretrieve.index.builder import delete_from_index

        manifest = delete_from_index(_read_ids(delete), name=name, store=store)
        console.print(f"index {manifest.name} now holds {_live(manifest, store)} vectors → {store.path(manifest.name)}",
                      highlight=False)
        return
    if corpus is None:
        raise ArrError("give the CORPUS to index (or --delete IDS_FILE)")

    encoding = EncodingOptions(
        fields=FieldNames(id=id_field, text=text_field, title=title_field),
        skip_invalid=skip_invalid,
        chunking=Chunking(chunk_words, chunk_overlap) if chunk_words else None,
        metadata_fields=tuple(metadata_field or ()),
        batch_size=batch_size,
        device=device,
        devices=[d.strip() for d in devices.split(",") if d.strip()] if devices else None,
        ray=ray,
        workers=workers,
        dtype=dtype,
        shard_size=shard_size,
        show_progress=True,
    )
    if add or upsert:
        if no_bm25:
            raise ArrError("--no-bm25 shapes a new index; --add keeps both sides of the index as they were built")
        manifest = add_to_index(corpus, name=name, encoding=encoding, store=store, upsert=upsert)
        console.print(f"index {manifest.name} now holds {_live(manifest, store)} vectors ({manifest.model}) → "
                      f"{store.path(manifest.name)}", highlight=False)
        return
    manifest = build_index(
        corpus,
        name=name,
        model=model,
        spec=IndexSpec(index_type, parse_size(memory_budget) if memory_budget else None, seed, hnsw_m, ef_construction, reduced_dim),
        encoding=encoding,
        store=store,
        overwrite=overwrite,
        bm25=not no_bm25,
    )
    console.print(
        f"indexed {manifest.count} {'chunks' if encoding.chunking else 'documents'} with {manifest.model} "
        f"({manifest.encoder['dtype']}, dim {manifest.dim}, {manifest.index_type}: {manifest.index_params['reason']}) "
        f"→ {store.path(manifest.name)}",
        highlight=False,
    )


def _live(manifest, store) -> int:
    return manifest.count - len(manifest.deleted_rows(store.path(manifest.name)))


def _read_ids(path: Path) -> list[str]:
    """One id per line (blank lines skipped), the way `arr search -o` run files name documents."""
    from arretrieve.errors import ArrError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArrError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
