"""Reranking by the decoder (`--rerank likelihood`): nDCG@10 by fused weight and depth, over dense
and hybrid first stages, and the latency it adds.

    python benchmarks/likelihood_rerank.py $ARR_HOME/collections/perlpod/dev --split dev \
        [--model NAME] [--queries 200] [--depths 10,20] [--latency-depths 10,20,50]

The corpus is indexed as `arr index` does (flat, with its BM25 side) in a scratch store; each
query's first-stage top max(--depths) comes from `Searcher.search_ids` in dense and in hybrid mode,
each hit (of either list, scored once) is scored by the library's reranker (`AutoRegEmbedModel.query_likelihood`: the mean
log-likelihood per token of the query and EOS after the hit's compressed states, recomputed from
its text) and the two are fused by `likelihood_fusion` for w from 0 (first stage alone) to 1
(likelihood alone). The weight and depth the toolkit ships are chosen from this on dev splits only.
--queries takes a seeded sample of the split's queries. Latency: the wall of the rescoring per
query at each of --latency-depths, on the first 10 queries (the first stage excluded).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default=None)
    parser.add_argument("--queries", type=int, default=None, help="a seeded sample of this many queries")
    parser.add_argument("--depths", default="10,20")
    parser.add_argument("--latency-depths", default="10,20,50")
    args = parser.parse_args()
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.metrics import compute_metrics
    from arretrieve.index import IndexSpec, IndexStore, Searcher, build_index
    from arretrieve.index.searcher import likelihood_fusion
    from arretrieve.registry import Registry

    registry = Registry()
    entry = registry.resolve(args.model)
    dataset = load_dataset(str(args.folder), args.split)
    query_ids = sorted(dataset.queries)
    if args.queries and args.queries < len(query_ids):
        query_ids = sorted(random.Random(0).sample(query_ids, args.queries))
    queries = [dataset.queries[q] for q in query_ids]
    depths = [int(d) for d in args.depths.split(",")]
    store = IndexStore(Path(tempfile.mkdtemp(prefix="rerank-")))
    build_index(args.folder, name="bench", model=entry.name, spec=IndexSpec("flat"), store=store, registry=registry, bm25=True)
    searcher = Searcher(store.path("bench"), registry=registry)
    template = entry.template("document")
    weights = [round(w, 1) for w in np.linspace(0, 1, 11)]
    report = {"folder": str(args.folder), "split": args.split, "model": entry.name, "queries": len(queries),
              "ndcg@10": {}, "rescoring_ms_per_query_p50": {}}
    first_stage = {mode: searcher.search_ids(queries, max(depths), mode=mode) for mode in ("dense", "hybrid")}
    scored = []  # per query, doc id -> likelihood, for the union of both modes' hits (scored once)
    for number, query in enumerate(queries):
        docs = list(dict.fromkeys(doc for mode in first_stage for doc, _ in first_stage[mode][number]))
        texts = [searcher.document(doc).full_text for doc in docs]
        scored.append(dict(zip(docs, searcher.decoder_model.query_likelihood(texts, template, query).tolist())))
    for mode, ranked in first_stage.items():
        likelihoods = [np.array([known[doc] for doc, _ in hits]) for known, hits in zip(scored, ranked)]
        for depth in depths:
            table = {}
            for w in weights:
                run = {}
                for q, hits, ll in zip(query_ids, ranked, likelihoods):
                    fused = likelihood_fusion(np.array([s for _, s in hits[:depth]]), ll[:depth], w)
                    run[q] = {doc: float(s) for (doc, _), s in zip(hits[:depth], fused)}
                table[f"{w:.1f}"] = round(compute_metrics(dataset.qrels, run)["NDCG@10"], 4)
            report["ndcg@10"][f"{mode}, top {depth}"] = table
    ranked = searcher.search_ids(queries[:10], max(int(d) for d in args.latency_depths.split(",")), mode="dense")
    for depth in (int(d) for d in args.latency_depths.split(",")):
        walls = []
        for query, hits in zip(queries[:10], ranked):
            texts = [searcher.document(doc).full_text for doc, _ in hits[:depth]]
            started = time.perf_counter()
            searcher.decoder_model.query_likelihood(texts, template, query)
            walls.append(time.perf_counter() - started)
        report["rescoring_ms_per_query_p50"][str(depth)] = round(float(np.percentile(walls, 50)) * 1e3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
