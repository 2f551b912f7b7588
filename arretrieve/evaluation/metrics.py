"""Retrieval metrics with pytrec_eval (trec_eval's measures), computed as BEIR's evaluator does."""

from __future__ import annotations

K_VALUES = (1, 3, 5, 10, 100)

# pytrec_eval's measure for each of our metric names (cut-offs appended)
_MEASURES = {"NDCG": "ndcg_cut", "MAP": "map_cut", "Recall": "recall", "P": "P"}


def compute_metrics(
    qrels: dict[str, dict[str, int]],
    results: dict[str, dict[str, float]],
    k_values: tuple[int, ...] = K_VALUES,
    ignore_identical_ids: bool = False,
) -> dict[str, float]:
    """nDCG, MAP, Recall, P and MRR at each cut-off, rounded to 5 places as BEIR reports them:
    trec_eval's measures averaged over the queries that have both judgements and results, MRR@k
    (the first relevant hit's reciprocal rank within k) averaged over every judged query."""
    import pytrec_eval

    results = {qid: {doc: score for doc, score in hits.items() if not (ignore_identical_ids and doc == qid)}
               for qid, hits in results.items()}
    cuts = ",".join(str(k) for k in k_values)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {f"{measure}.{cuts}" for measure in _MEASURES.values()})
    scores = evaluator.evaluate(results)
    metrics = {f"{name}@{k}": round(sum(s[f"{measure}_{k}"] for s in scores.values()) / len(scores), 5)
               for name, measure in _MEASURES.items() for k in k_values}
    reciprocal = dict.fromkeys(k_values, 0.0)
    for qid, hits in results.items():
        relevant = {doc for doc, grade in qrels.get(qid, {}).items() if grade > 0}
        ranked = sorted(hits.items(), key=lambda item: item[1], reverse=True)[: max(k_values)]
        first = next((rank for rank, (doc, _) in enumerate(ranked, start=1) if doc in relevant), None)
        for k in k_values:
            if first is not None and first <= k:
                reciprocal[k] += 1.0 / first
    metrics.update({f"MRR@{k}": round(reciprocal[k] / len(qrels), 5) for k in k_values})
    return metrics
