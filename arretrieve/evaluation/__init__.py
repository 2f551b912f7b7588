"""BEIR evaluation: datasets, metrics, retrievers and the side-by-side runner."""

from .beir_data import DEFAULT_DATASETS, BeirDataset, load_dataset
from .beir_eval import EvalRecord, bar_chart, markdown_table, run_beir_eval
from .metrics import K_VALUES, compute_metrics
from .retrievers import BM25

__all__ = [
    "BM25",
    "DEFAULT_DATASETS",
    "K_VALUES",
    "BeirDataset",
    "EvalRecord",
    "bar_chart",
    "compute_metrics",
    "load_dataset",
    "markdown_table",
    "run_beir_eval",
]
