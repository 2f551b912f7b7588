"""`arr beir-eval`: several retrievers on several BEIR datasets, with every setting recorded."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..errors import ArrError
from ..home import write_json_atomic
from ..encoding import EncodingOptions
from ..registry import Registry, validate_name
from .beir_data import dataset_labels, load_dataset
from .metrics import K_VALUES, compute_metrics
from .retrievers import BM25, bm25_retrieval, dense_retrieval, parse_model_spec

log = logging.getLogger(__name__)


@dataclass
class EvalRecord:
    dataset: str
    model: str
    metrics: dict[str, float]
    payload: dict[str, Any]
    path: Path


def run_beir_eval(
    datasets: Sequence[str],
    models: Sequence[str],
    *,
    split: str = "test",
    top_k: int = 100,
    index_type: str = "flat",
    ignore_identical_ids: bool = True,
    output: str | Path = Path("results"),
    encoding: EncodingOptions | None = None,
    registry: Registry | None = None,
) -> list[EvalRecord]:
    """Evaluate every model on every dataset; write one results JSON per pair under `output`.

    As BEIR's evaluator does by default, a hit whose id equals its query's id is dropped (sets such
    as ArguAna and Quora hold each query as a document too); one extra hit is retrieved so every
    cut-off stays full. `ignore_identical_ids=False` keeps them."""
    encoding = encoding or EncodingOptions()
    registry = registry or Registry()
    output = Path(output)
    if top_k < max(K_VALUES):
        raise ArrError(f"--top-k must be at least {max(K_VALUES)} (the largest metric cut-off)")
    specs = {model: parse_model_spec(model, registry) for model in models if model != BM25}  # fail before any work
    records = []
    for spec, label in zip(datasets, dataset_labels(datasets)):
        dataset = load_dataset(spec, split, label)
        ignore = ignore_identical_ids
        depth = top_k + 1 if ignore else top_k
        for model in models:
            log.info("evaluating %s on %s (%d queries)", model, dataset.name, len(dataset.queries))
            started = time.perf_counter()
            if model == BM25:
                retrieval = bm25_retrieval(dataset, depth)
            else:
                spec = specs[model]
                retrieval = dense_retrieval(dataset, spec.model, registry, encoding, index_type, depth, mode=spec.mode,
                                            rerank_depth=spec.rerank_depth)
            results, dropped = drop_identical_ids(retrieval.results, top_k) if ignore else (retrieval.results, 0)
            if dropped:
                log.info("%s on %s: dropped %d hits whose id equals the query id (--keep-identical-ids keeps them)",
                         model, dataset.name, dropped)
            metrics = compute_metrics(dataset.qrels, results, K_VALUES)
            payload = {
                "dataset": dataset.name,
                "dataset_path": str(dataset.folder.resolve()),
                "dataset_fingerprint": dataset.fingerprint,
                "split": split,
                "queries": len(dataset.queries),
                "metrics": metrics,
                "retriever": retrieval.settings,
                "top_k": top_k,
                "ignore_identical_ids": ignore,
                "identical_ids_dropped": dropped,
                "seconds": {**retrieval.seconds, "total": round(time.perf_counter() - started, 2)},
                "toolkit_version": __version__,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }
            path = output / validate_name(dataset.name.lower()) / f"{model}.json"
            write_json_atomic(path, payload)
            records.append(EvalRecord(dataset.name, model, metrics, payload, path))
    return records


def drop_identical_ids(results: dict[str, dict[str, float]], top_k: int) -> tuple[dict[str, dict[str, float]], int]:
    """Each query's hits without its own id, cut to the `top_k` best; and how many were dropped."""
    kept, dropped = {}, 0
    for qid, hits in results.items():
        dropped += qid in hits
        ranked = sorted(((doc, score) for doc, score in hits.items() if doc != qid), key=lambda item: -item[1])
        kept[qid] = dict(ranked[:top_k])
    return kept, dropped


def markdown_table(records: Sequence[EvalRecord], metric: str = "NDCG@10") -> str:
    """Models × datasets, one metric."""
    datasets = list(dict.fromkeys(r.dataset for r in records))
    models = list(dict.fromkeys(r.model for r in records))
    if records and metric not in records[0].metrics:
        raise ArrError(f"unknown metric {metric!r}; known: {', '.join(records[0].metrics)}")
    cells = {(r.model, r.dataset): r.metrics[metric] for r in records}
    lines = [f"| model | {' | '.join(datasets)} |", "|---|" + "---:|" * len(datasets)]
    for model in models:
        values = [f"{cells[(model, d)]:.4f}" if (model, d) in cells else "" for d in datasets]
        lines.append(f"| {model} | {' | '.join(values)} |")
    return "\n".join(lines)


def bar_chart(records: Sequence[EvalRecord], path: Path, metric: str = "NDCG@10") -> Path:
    """A grouped bar chart (datasets × models) of one metric, as PNG."""
    import numpy as np

    from ..plotting import pyplot

    plt = pyplot()

    datasets = list(dict.fromkeys(r.dataset for r in records))
    models = list(dict.fromkeys(r.model for r in records))
    cells = {(r.model, r.dataset): r.metrics[metric] for r in records}
    width = 0.8 / len(models)
    figure, axes = plt.subplots(figsize=(max(5, 1.6 * len(datasets) * max(1, len(models) / 2)), 4))
    for i, model in enumerate(models):
        values = [cells.get((model, d), 0.0) for d in datasets]
        bars = axes.bar(np.arange(len(datasets)) + i * width, values, width, label=model)
        axes.bar_label(bars, fmt="%.3f", fontsize=7)
    axes.set_xticks(np.arange(len(datasets)) + width * (len(models) - 1) / 2, datasets)
    axes.set_ylabel(metric)
    axes.set_ylim(0, 1)
    # Beside the axes, not over them: with several models a legend inside covered the bars.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
