"""Retrieval metrics with beir's evaluator (pytrec_eval underneath)."""

from __future__ import annotations

import logging

K_VALUES = (1, 3, 5, 10, 100)


def compute_metrics(
    qrels: dict[str, dict[str, int]],
    results: dict[str, dict[str, float]],
    k_values: tuple[int, ...] = K_VALUES,
    ignore_identical_ids: bool = False,
) -> dict[str, float]:
    """nDCG, MAP, Recall, P and MRR at each cut-off, averaged over the judged queries."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    logging.getLogger("beir").setLevel(logging.WARNING)
    results = {qid: dict(hits) for qid, hits in results.items()}  # beir pops identical ids in place
    ndcg, map_, recall, precision = EvaluateRetrieval.evaluate(qrels, results, list(k_values), ignore_identical_ids)
    mrr = EvaluateRetrieval.evaluate_custom(qrels, results, list(k_values), metric="mrr")
    return {**ndcg, **map_, **recall, **precision, **mrr}
