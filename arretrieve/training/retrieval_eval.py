"""Retrieval quality of the model being trained, measured during training.

The training losses score decoder likelihoods (or one batch's contrastive ranking); neither says
how the pooled vectors retrieve, and a loss can stay flat while retrieval collapses. This
callback encodes a small BEIR set with the model as it is, every `eval_steps` steps, and appends
nDCG@10 and Recall@10 to metrics.jsonl next to the losses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from ..encoding.autoregembed_embedder import AutoRegEmbedEmbedder
from ..evaluation.beir_data import BeirDataset
from ..evaluation.metrics import compute_metrics
from ..registry import ModelEntry

TOP_K = 10


class RetrievalEval(TrainerCallback):
    """nDCG@10 on `dataset` before the first step, every `every` steps and after the last."""

    def __init__(self, model, entry: ModelEntry, dataset: BeirDataset, path: Path, stage: str, every: int,
                 dtype: torch.dtype, batch_size: int = 32):
        self.model, self.entry, self.dataset = model, entry, dataset
        self.path, self.stage, self.every, self.dtype, self.batch_size = path, stage, every, dtype, batch_size
        documents = list(dataset.corpus.documents())
        self.doc_ids, self.doc_texts = [d.id for d in documents], [d.full_text for d in documents]
        self.query_ids = list(dataset.queries)

    def evaluate(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()  # no dropout, so no random numbers are drawn: training stays reproducible
        embedder = AutoRegEmbedEmbedder(self.entry, self.model, self.model.device, self.dtype)
        try:
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
                documents = embedder.encode(self.doc_texts, role="document", batch_size=self.batch_size)
                queries = embedder.encode([self.dataset.queries[q] for q in self.query_ids], role="query",
                                          batch_size=self.batch_size)
        finally:
            self.model.train(was_training)
        scores = queries @ documents.T
        depth = min(TOP_K, len(self.doc_ids))
        top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        results = {qid: {self.doc_ids[d]: float(scores[q, d]) for d in top[q]} for q, qid in enumerate(self.query_ids)}
        metrics = compute_metrics(self.dataset.qrels, results, k_values=(TOP_K,))
        return {"ndcg@10": metrics["NDCG@10"], "recall@10": metrics["Recall@10"]}

    def _record(self, state) -> None:
        if not state.is_world_process_zero:
            return
        started = time.perf_counter()
        metrics = self.evaluate()
        record = {"stage": self.stage, "step": state.global_step, "eval": self.dataset.name, **metrics,
                  "eval_seconds": round(time.perf_counter() - started, 1)}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:  # a resumed run measured its starting point already
            self._record(state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state)
