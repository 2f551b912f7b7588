"""What the model being trained is worth, measured during training, and the best of it kept.

The training losses score decoder likelihoods (or one batch's contrastive ranking); neither says
how the pooled vectors retrieve, nor whether the states carry their own document rather than a
prior, and a loss can stay flat while retrieval collapses. This callback measures, before the first
step, every `eval_steps` steps and after the last:
  - retrieval: nDCG@10 and Recall@10 on a small BEIR set (`eval_data`);
  - the compression probe on held-out pairs (`probe_data`; see evaluation/compression_probe.py);
and appends them to metrics.jsonl next to the losses. With `keep_best`, the weights of the best
evaluation by that metric are saved, and restored at the end of the stage, so a stage never ends
worse than its best measurement. Kept by the probe's share, a best that never left the noise (two
standard errors) is reported with a warning: the states did not learn to compress, and which
evaluation was kept is chance (on one such run the kept last step had the most collapsed vectors).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..encoding.autoregembed_embedder import AutoRegEmbedEmbedder
from ..evaluation.beir_data import BeirDataset
from ..evaluation.compression_probe import CompressionProbe
from ..evaluation.metrics import compute_metrics
from ..home import write_json_atomic
from ..index.exact import best_first, dense_scores
from ..registry import ModelEntry
from .model_setup import load_trained_state, save_trained
from .report import PROBE_METRICS

TOP_K = 10
SHARE = "probe_specific_share"
NOISE_STDERRS = 2  # a share below this many standard errors is indistinguishable from none

log = logging.getLogger(__name__)


class RetrievalCheck:
    """nDCG@10 / Recall@10 of the model as it is, on a small BEIR set, encoded as the trained entry will."""

    def __init__(self, entry: ModelEntry, dataset: BeirDataset, dtype: torch.dtype, batch_size: int = 32):
        self.entry, self.dataset, self.dtype, self.batch_size = entry, dataset, dtype, batch_size
        documents = list(dataset.corpus.documents())
        self.doc_ids, self.doc_texts = [d.id for d in documents], [d.full_text for d in documents]
        self.query_ids = list(dataset.queries)

    def measure(self, model) -> dict[str, float]:
        embedder = AutoRegEmbedEmbedder(self.entry, model, model.device, self.dtype)
        # Training may cut its inputs shorter (`max_length`) than the entry encodes them.
        trained_length, model.max_length = model.max_length, self.entry.max_length
        try:
            documents = embedder.encode(self.doc_texts, role="document", batch_size=self.batch_size)
            queries = embedder.encode([self.dataset.queries[q] for q in self.query_ids], role="query",
                                      batch_size=self.batch_size)
        finally:
            model.max_length = trained_length
        scores = dense_scores(queries, documents)
        top = best_first(scores, TOP_K)
        results = {qid: {self.doc_ids[d]: float(scores[q, d]) for d in top[q]} for q, qid in enumerate(self.query_ids)}
        metrics = compute_metrics(self.dataset.qrels, results, k_values=(TOP_K,))
        return {"ndcg@10": metrics["NDCG@10"], "recall@10": metrics["Recall@10"]}


class TrainingEval(TrainerCallback):
    """Retrieval and/or probe measurements at step 0, every `every` steps and at the end; keep-best."""

    def __init__(self, model, path: Path, stage: str, every: int, dtype: torch.dtype, *,
                 retrieval: RetrievalCheck | None = None, probe: CompressionProbe | None = None,
                 keep_best: str | None = None, best_dir: Path | None = None):
        self.model, self.path, self.stage, self.every, self.dtype = model, path, stage, every, dtype
        self.retrieval, self.probe = retrieval, probe
        self.keep_best, self.best_dir = keep_best, best_dir
        self.best: dict | None = None
        if keep_best and best_dir and (best_dir / "best.json").is_file():  # a resumed run keeps its best so far
            self.best = json.loads((best_dir / "best.json").read_text())

    def evaluate(self) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()  # no dropout, so no random numbers are drawn: training stays reproducible
        metrics: dict[str, float] = {}
        try:
            with torch.autocast(self.model.device.type, dtype=torch.bfloat16, enabled=self.dtype == torch.bfloat16):
                if self.retrieval:
                    metrics.update(self.retrieval.measure(self.model))
                if self.probe:
                    result = self.probe.measure(self.model)
                    metrics.update({f"probe_{name}": getattr(result, name) for name in PROBE_METRICS})
        finally:
            self.model.train(was_training)
        return metrics

    def _record(self, state) -> None:
        if not state.is_world_process_zero:
            return
        started = time.perf_counter()
        metrics = self.evaluate()
        record = {"stage": self.stage, "step": state.global_step, **metrics,
                  "eval_seconds": round(time.perf_counter() - started, 1)}
        if self.retrieval:
            record["eval"] = self.retrieval.dataset.name
        if self.probe:
            record["probe"] = self.probe.pairs.name
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.keep_best:
            value = metrics[self.keep_best]
            value = float("-inf") if value != value else value  # NaN (an undefined share) is never best
            if self.best is None or value > self.best["value"]:
                save_trained(self.model, self.best_dir)
                self.best = {"metric": self.keep_best, "value": value, "step": state.global_step}
                if self.keep_best == SHARE:
                    self.best["noise"] = NOISE_STDERRS * metrics[f"{SHARE}_stderr"]
                write_json_atomic(self.best_dir / "best.json", self.best)

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:  # a resumed run measured its starting point already
            self._record(state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self._record(state)

    def on_train_end(self, args, state, control, **kwargs):
        if self.best and self.best["step"] != state.global_step:
            load_trained_state(self.model, self.best_dir)
        if self.best and "noise" in self.best and not self.best["value"] > self.best["noise"]:
            log.warning("%s: the best document-specific share, %.3f at step %d, is within the noise (%.3f, %d standard "
                        "errors): the states did not learn to compress, so the checkpoint kept is as good as any other; "
                        "check the probe and the retrieval in metrics.jsonl before building on it",
                        self.stage, self.best["value"], self.best["step"], self.best["noise"], NOISE_STDERRS)
