"""`arr mine-negatives DATA OUTPUT`: hard negatives for training triplets, mined with BM25 or a registry model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import BatchSize, Device, Dtype
from .output import console


def mine_negatives(
    data: str = typer.Argument(..., help="Pairs or triplets: .jsonl(.gz)/.json/.csv/.tsv/.parquet or a Hugging Face dataset id."),
    output: Path = typer.Argument(..., help="Triplets .jsonl to write: query, pos, neg (the mined negatives first)."),
    retriever: str = typer.Option("bm25", "--retriever", "-r", help="bm25, or a registry model that ranks the candidates."),
    corpus: Optional[Path] = typer.Option(None, help="More candidate texts: any corpus arr index reads (DATA's own texts are always candidates)."),
    negatives: int = typer.Option(1, min=1, help="Negatives mined per row."),
    depth: int = typer.Option(10, min=1, help="Pick them among this many best-ranked candidates left after the filters."),
    max_score_ratio: Optional[float] = typer.Option(0.95, help="Drop candidates scoring at least this times the positive's score (likely unlabelled positives); 0 turns it off."),
    sampling: str = typer.Option("random", help="random (among the top --depth) or top."),
    seed: int = typer.Option(0, help="Seed of the random sampling."),
    keep_negatives: bool = typer.Option(True, "--keep-negatives/--drop-negatives", help="Keep each row's own negatives after the mined ones."),
    skip: int = typer.Option(0, min=0, help="Mine for rows after the first SKIP (all rows stay candidates)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Mine for this many rows."),
    query_field: str = typer.Option("query", help="Query field of DATA."),
    pos_field: str = typer.Option("pos", help="Positive field of DATA."),
    neg_field: str = typer.Option("neg", help="Negatives field of DATA (and OUTPUT)."),
    batch_size: int = BatchSize,
    device: str = Device,
    dtype: Optional[str] = Dtype,
) -> None:
    """Write DATA's rows with hard negatives: candidates ranked high that are not the positive."""
    from arretrieve.training.config import FieldMap
    from arretrieve.training.mining import MiningSettings
    from arretrieve.training.mining import mine_negatives as mine

    settings = MiningSettings(negatives=negatives, depth=depth, max_score_ratio=max_score_ratio or None,
                              sampling=sampling, seed=seed, keep_negatives=keep_negatives)
    report = mine(data, output, retriever, settings, corpus=corpus, skip=skip, limit=limit,
                  fields=FieldMap(query=query_field, pos=pos_field, neg=neg_field),
                  batch_size=batch_size, device=device, dtype=dtype, show_progress=True)
    console.print(report.summary())
    console.print(f"wrote {output}")
