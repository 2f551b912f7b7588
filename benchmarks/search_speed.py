"""Search speed, size and recall of each index type on real embeddings, next to BEIR's exact search.

Corpus vectors come from the shared encoding cache (encoded by the same model with `arr index`, or
encoded here if missing); queries are encoded once. For every index type the script builds the
index through `arr index`'s own code, then measures build time, bytes per vector (index file),
batch QPS (all queries in one call), one-at-a-time QPS, and recall@10 against exact search.
BEIR's `DenseRetrievalExactSearch` runs on the same vectors (its model returns the precomputed
vectors, so only its search is timed).

    python benchmarks/search_speed.py --corpus data/debian-desc/full \
        --queries data/debian-desc/full/queries.jsonl --model smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# (index type, build options, search settings swept on that one build)
SWEEPS = [
    ("flat", {}, [{}]),
    ("hnsw", {}, [{"ef_search": e} for e in (16, 32, 48, 64, 128)]),
    ("hnsw", {"ef_construction": 200}, [{"ef_search": e} for e in (16, 24, 32, 40, 48, 64)]),
    ("hnsw", {"ef_construction": 400}, [{"ef_search": e} for e in (24, 32, 36, 40, 48)]),
    ("hnsw", {"hnsw_m": 48, "ef_construction": 200}, [{"ef_search": e} for e in (16, 24, 32, 48)]),
    ("hnsw-pca", {}, [{"ef_search": e, "rerank_factor": f} for e, f in ((32, 2), (40, 2), (40, 3), (60, 3), (60, 4), (80, 4), (128, 6))]),
    ("hnsw-pca", {"reduced_dim": 64}, [{"ef_search": e, "rerank_factor": f} for e, f in ((40, 3), (60, 4), (80, 4))]),
    ("hnsw-pca", {"reduced_dim": 128}, [{"ef_search": e, "rerank_factor": f} for e, f in ((40, 2), (60, 3), (80, 4))]),
    ("ivf-flat", {}, [{"nprobe": p} for p in (4, 8, 16, 32)]),
    ("ivf-pq", {}, [{"nprobe": p, "rerank_factor": 10} for p in (8, 16, 32)]),
    ("sq-fp16", {}, [{}]),
    ("sq-int8", {}, [{}]),
]


class PrecomputedModel:
    """What BEIR's exact search calls: returns the vectors we already have."""

    def __init__(self, query_vectors: np.ndarray, corpus_vectors: np.ndarray):
        self.query_vectors, self.corpus_vectors = query_vectors, corpus_vectors

    def encode_queries(self, queries, **kwargs):
        import torch

        return torch.from_numpy(self.query_vectors)

    def encode_corpus(self, corpus, **kwargs):
        import torch

        return torch.from_numpy(self.corpus_vectors[[doc["row"] for doc in corpus]])


def best_of(repeats, run):
    """The shortest wall time of `repeats` calls (one-off start-up costs and noise only slow a call) and
    the last call's result."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def beir_exact(query_vectors, corpus_vectors, ids, query_ids, texts, repeats, top_k=10):
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    search = DenseRetrievalExactSearch(PrecomputedModel(query_vectors, corpus_vectors), batch_size=128)
    corpus = {doc_id: {"title": "", "text": text, "row": row} for row, (doc_id, text) in enumerate(zip(ids, texts))}
    queries = {qid: "" for qid in query_ids}
    return best_of(repeats, lambda: search.search(corpus, queries, top_k, score_function="dot"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--types", nargs="+", default=sorted({kind for kind, _, _ in SWEEPS}))
    parser.add_argument("--single-queries", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--repeats", type=int, default=3, help="batch searches timed per setting (the best counts)")
    args = parser.parse_args()

    import faiss

    from arretrieve.corpus import CorpusSource
    from arretrieve.encoding import EncodingOptions
    from arretrieve.index import IndexSpec, IndexStore, Searcher, build_index
    from arretrieve.encoding import encode_corpus
    from arretrieve.corpus.queries import read_queries
    from arretrieve.registry import Registry

    registry = Registry()
    entry = registry.resolve(args.model)
    source = CorpusSource(args.corpus)
    job = encode_corpus(source, entry, EncodingOptions(show_progress=True))
    corpus_vectors = np.concatenate(list(job.iter_vectors()))
    documents = list(source.documents())
    ids, texts = [d.id for d in documents], [d.full_text for d in documents]
    queries = read_queries(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp))
        build_index(args.corpus, name="flat", model=entry.name, spec=IndexSpec("flat"), store=store, registry=registry)
        searcher = Searcher(store.path("flat"), registry=registry)
        query_vectors = searcher.embedder.encode(list(queries.values()), role="query", batch_size=64)
        exact = np.asarray([[r for r, _ in hits] for hits in _rows(searcher, query_vectors, 10)])

        beir_seconds, beir_results = beir_exact(query_vectors, corpus_vectors, ids, list(queries), texts, args.repeats)
        beir_top = [set(sorted(hits, key=hits.get, reverse=True)[:10]) for hits in beir_results.values()]
        exact_ids = [set(ids[r] for r in row) for row in exact]
        beir_recall = float(np.mean([len(a & b) / 10 for a, b in zip(beir_top, exact_ids)]))
        report = {"vectors": len(ids), "dim": int(corpus_vectors.shape[1]), "queries": len(queries),
                  "threads": faiss.omp_get_max_threads(), "model": entry.name, "repeats": args.repeats}
        print(json.dumps(report), flush=True)
        beir_qps = len(queries) / beir_seconds
        print(json.dumps({"method": "beir-exact", "batch_qps": round(beir_qps, 1), "recall@10": round(beir_recall, 4)}), flush=True)

        for index_type, build_options, sweep in SWEEPS:
            if index_type not in args.types:
                continue
            started = time.perf_counter()
            manifest = build_index(args.corpus, name=index_type, model=entry.name, spec=IndexSpec(index_type, **build_options),
                                   store=store, registry=registry, overwrite=True)
            build_seconds = time.perf_counter() - started
            folder = store.path(index_type)
            size = os.path.getsize(folder / manifest.files["index"])
            for params in sweep:
                searcher = Searcher(folder, registry=registry, search_params=params)
                batch_seconds, found = best_of(args.repeats, lambda: _rows(searcher, query_vectors, 10))
                started = time.perf_counter()
                for q in range(args.single_queries):
                    _rows(searcher, query_vectors[q : q + 1], 10)
                single_seconds = time.perf_counter() - started
                recall = float(np.mean([len({r for r, _ in hits} & set(row)) / 10 for hits, row in zip(found, exact)]))
                print(json.dumps({
                    "method": index_type, "build": build_options, "params": params, "build_s": round(build_seconds, 2),
                    "bytes_per_vector": round(size / len(ids), 1), "batch_qps": round(len(queries) / batch_seconds, 1),
                    "single_qps": round(args.single_queries / single_seconds, 1), "recall@10": round(recall, 4),
                    "batch_speedup_vs_beir": round(len(queries) / batch_seconds / beir_qps, 1),
                }), flush=True)


def _rows(searcher, query_vectors, k):
    """(row, score) hits through the searcher's own candidate path (re-ranking included)."""
    scores, rows = searcher._candidates(query_vectors, k)
    return [[(int(r), float(s)) for r, s in zip(row, score) if r >= 0] for row, score in zip(rows, scores)]


if __name__ == "__main__":
    main()
