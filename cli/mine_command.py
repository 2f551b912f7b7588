"""`arr mine-negatives DATA OUTPUT`: hard negatives for training triplets, mined with BM25 or a registry model."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer

from .options import BatchSize, Device, Dtype, dataclass_options, given
from .output import console


def mine_negatives(
    data: str = typer.Argument(..., help="Pairs or triplets: .jsonl(.gz)/.json/.csv/.tsv/.parquet or a Hugging Face dataset id."),
    output: Path = typer.Argument(..., help="Triplets .jsonl to write: query, pos, neg (the mined negatives first)."),
    retriever: str = typer.Option("bm25", "--retriever", "-r", help="bm25, or a registry model that ranks the candidates."),
    corpus: Optional[Path] = typer.Option(None, help="More candidate texts: any corpus arr index reads (DATA's own texts are always candidates)."),
    skip: int = typer.Option(0, min=0, help="Mine for rows after the first SKIP (all rows stay candidates)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Mine for this many rows."),
    query_field: str = typer.Option("query", help="Query field of DATA."),
    pos_field: str = typer.Option("pos", help="Positive field of DATA."),
    neg_field: str = typer.Option("neg", help="Negatives field of DATA (and OUTPUT)."),
    batch_size: int = BatchSize,
    device: str = Device,
    dtype: Optional[str] = Dtype,
    **mining,
) -> None:
    """Write DATA's rows with hard negatives: candidates ranked high that are not the positive."""
    from arretrieve.training.config import FieldMap
    from arretrieve.training.mining import MiningSettings
    from arretrieve.training.mining import mine_negatives as mine

    chosen = given(mining, MiningSettings)
    if chosen.get("max_score_ratio") == 0:  # 0 turns the filter off
        chosen["max_score_ratio"] = None
    settings = MiningSettings(**chosen)
    report = mine(data, output, retriever, settings, corpus=corpus, skip=skip, limit=limit,
                  fields=FieldMap(query=query_field, pos=pos_field, neg=neg_field),
                  batch_size=batch_size, device=device, dtype=dtype, show_progress=True)
    console.print(report.summary())
    console.print(f"wrote {output}")


def _signature() -> inspect.Signature:
    """The command's own parameters, then one flag per `MiningSettings` field."""
    from arretrieve.training.mining import MiningSettings

    own = [p for p in inspect.signature(mine_negatives, eval_str=True).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    return inspect.Signature(own + dataclass_options(MiningSettings))


mine_negatives.__signature__ = _signature()
