"""`arr beir-eval DATASET... --models A,B`: BEIR metrics for several models side by side."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .options import BatchSize, Device, Dtype
from .output import console, escape


def beir_eval(
    datasets: Optional[List[str]] = typer.Argument(None, help="BEIR folders or names (default: scifact nfcorpus fiqa arguana scidocs)."),
    models: Optional[str] = typer.Option(None, "--models", "-m", help="Comma-separated registry models, bm25, bm25+MODEL for the hybrid, MODEL@rerank20 (or bm25+MODEL@rerank20) with its top 20 reranked by the decoder's likelihood (default: the default model)."),
    split: str = typer.Option("test", help="qrels split to evaluate."),
    top_k: int = typer.Option(100, help="Documents retrieved per query (>= 100, the largest cut-off)."),
    index_type: str = typer.Option("flat", help="flat (exact) or an ANN type, to measure its cost in quality."),
    identical_ids: bool = typer.Option(True, "--ignore-identical-ids/--keep-identical-ids",
                                       help="Drop hits whose id equals the query id, as BEIR's evaluator does."),
    output: Path = typer.Option(Path("results"), help="Folder for the results JSON files."),
    metric: str = typer.Option("NDCG@10", help="Metric shown in the table."),
    plot: bool = typer.Option(False, "--plot", help="Also write a bar chart PNG to the output folder."),
    batch_size: int = BatchSize,
    device: str = Device,
    dtype: Optional[str] = Dtype,
) -> None:
    """Evaluate retrieval with BEIR metrics; corpus vectors are cached, so a second run is fast."""
    from arretrieve.evaluation import DEFAULT_DATASETS, bar_chart, markdown_table, run_beir_eval
    from arretrieve.encoding import EncodingOptions
    from arretrieve.errors import ArrError
    from arretrieve.plotting import MISSING, plots_available
    from arretrieve.registry import Registry

    if plot and not plots_available():  # refused before the evaluation, not after it
        raise ArrError(f"--plot: {MISSING}")

    registry = Registry()
    names = [m.strip() for m in models.split(",") if m.strip()] if models else [registry.default_name]
    records = run_beir_eval(
        datasets or list(DEFAULT_DATASETS),
        names,
        split=split,
        top_k=top_k,
        index_type=index_type,
        ignore_identical_ids=identical_ids,
        output=output,
        encoding=EncodingOptions(batch_size=batch_size, device=device, dtype=dtype, show_progress=True),
        registry=registry,
    )
    print(markdown_table(records, metric))
    for record in records:
        console.print(f"[dim]{escape(str(record.path))}[/]", highlight=False, markup=True)
    if plot:
        chart = output / (metric.lower().replace("@", "_at_") + ".png")
        console.print(f"[dim]{escape(str(bar_chart(records, chart, metric)))}[/]", highlight=False, markup=True)
