"""Choose hybrid search's fusion on dev data: nDCG@10 of dense, BM25, RRF and weighted fusion by weight.

    python benchmarks/hybrid_weight.py --model autoregembed-smollm2-135m \
        --data data/debian-desc/dev --split dev

Builds the evaluation index of `arr beir-eval` (cached encodings reused) with its BM25 side, takes
each side's top 100 candidates once, and fuses them as `arr search --mode hybrid` does, for every
dense weight 0.0, 0.1, …, 1.0 and for reciprocal-rank fusion. Run on dev only: the chosen fusion
is `HYBRID` in arretrieve/index/searcher.py, and the best mode on dev is its DEFAULT_MODE.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()

    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.beir_eval import drop_identical_ids
    from arretrieve.evaluation.metrics import compute_metrics
    from arretrieve.evaluation.retrievers import dataset_index_store
    from arretrieve.index import Searcher, build_index
    from arretrieve.index.lexical import FUSION_DEPTH, fuse, search_bm25

    dataset = load_dataset(args.data, args.split)
    store = dataset_index_store(dataset)
    build_index(dataset.folder, name=args.model, model=args.model, store=store, overwrite=True, bm25=True)
    searcher = Searcher(store.path(args.model))
    queries = list(dataset.queries.values())
    vectors = searcher.embedder.encode(queries, role="query")
    dense = searcher._candidates(vectors, FUSION_DEPTH)
    lexical = search_bm25(searcher.bm25, queries, FUSION_DEPTH, searcher.manifest.count)
    ids = [doc_id for doc_id, _ in searcher.docstore.iter_ids()]

    def ndcg(scores, rows) -> float:
        results = {qid: {ids[r]: float(s) for s, r in zip(scores[i], rows[i]) if r >= 0}
                   for i, qid in enumerate(dataset.queries)}
        results, _ = drop_identical_ids(results, 10)
        return compute_metrics(dataset.qrels, results, [10])["NDCG@10"]

    table = {"dense": ndcg(*dense), "bm25": ndcg(*lexical), "rrf": ndcg(*fuse(dense, lexical, 10, "rrf", 0.5))}
    for weight in np.round(np.arange(0.0, 1.01, 0.1), 1):
        table[f"weighted {weight}"] = ndcg(*fuse(dense, lexical, 10, "weighted", float(weight)))
    best = max(table, key=table.get)
    print(json.dumps({"model": args.model, "data": args.data, "split": args.split, "queries": len(queries),
                      "ndcg@10": {k: round(v, 4) for k, v in table.items()}, "best": best,
                      "machine": platform.node(), "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
