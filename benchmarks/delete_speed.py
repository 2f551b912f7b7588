"""Search latency and recall before and after deleting a share of an index's documents.

    python benchmarks/delete_speed.py --corpus data/debian-desc/full \
        --queries data/debian-desc/dev/queries.jsonl --model all-minilm-l6-v2 --fraction 0.1

For each index type the script builds the index through `arr index`'s code (corpus vectors from the
shared encoding cache), then times k = 10 dense searches through `Searcher.search` (the path of
`arr search`, the API and the server, texts read from the docstore included) with the queries'
vectors encoded once: all queries in one call, and --single-queries one at a time. It then deletes
a seeded random `--fraction` of the documents with `Index.delete` (one commit: the rows are hidden
at search time, as `arr index --delete` does) and times the same searches again. Recall@10 is
measured against exact search over the documents live at that moment, and short lists (fewer
than 10 hits) are counted.

Beside the toolkit's deletion, the same searches on plain FAISS indexes:
- `rebuilt`: a new index of the same type over the surviving vectors only (the limit a deletion
  could reach: what `arr index --overwrite` would give);
- `faiss-selector`: FAISS's own search-time filter (`SearchParameters(sel=IDSelectorBitmap)`) on
  the index with every vector, for the index types whose search takes one (flat, hnsw, ivf-flat).
Both are timed as raw FAISS searches (no docstore), next to the toolkit's index searched the same
raw way before the deletion, so the columns compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

TYPES = ("flat", "hnsw", "hnsw-pca", "ivf-flat")
K = 10


def _timed(run, repeats: int = 3):
    """Best of `repeats` wall times, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def _exact_top(query_vectors: np.ndarray, corpus_vectors: np.ndarray, live: np.ndarray) -> list[set[int]]:
    scores = query_vectors @ corpus_vectors.T
    scores[:, ~live] = -np.inf
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    return [set(row.tolist()) for row in top]


def _recall(found: list[list[int]], exact: list[set[int]]) -> float:
    return round(float(np.mean([len(set(rows) & truth) / K for rows, truth in zip(found, exact)])), 4)


def _searcher_rows(searcher, queries: list[str], row_of: dict[str, int]) -> list[list[int]]:
    hits = searcher.search(queries, k=K, mode="dense", collapse=False)
    return [[row_of[hit.id] for hit in query_hits] for query_hits in hits]


def _measure_searcher(searcher, queries: list[str], vectors: np.ndarray, row_of: dict[str, int],
                      exact: list[set[int]], singles: int) -> dict:
    """Through Searcher.search, the query vectors given (so only the search itself is timed)."""
    position = {query: i for i, query in enumerate(queries)}
    searcher._query_vectors = lambda texts, mode, batch_size=32: vectors[[position[t] for t in texts]]
    batch_s, found = _timed(lambda: _searcher_rows(searcher, queries, row_of))
    started = time.perf_counter()
    for query in queries[:singles]:
        _searcher_rows(searcher, [query], row_of)
    single_s = time.perf_counter() - started
    return {"batch_qps": round(len(queries) / batch_s, 1), "single_ms": round(single_s / singles * 1000, 3),
            "recall@10": _recall(found, exact), "short_lists": sum(len(rows) < K for rows in found)}


def _measure_faiss(index, vectors: np.ndarray, exact: list[set[int]], singles: int, params=None,
                   to_row=None) -> dict:
    """Raw FAISS searches (no docstore); `to_row` maps the index's ids back to corpus rows."""
    search = (lambda q: index.search(q, K, params=params)) if params is not None else (lambda q: index.search(q, K))
    batch_s, (_, ids) = _timed(lambda: search(vectors))
    started = time.perf_counter()
    for q in range(singles):
        search(vectors[q : q + 1])
    single_s = time.perf_counter() - started
    rows = [[int(to_row[i]) if to_row is not None else int(i) for i in row if i >= 0] for row in ids]
    return {"batch_qps": round(len(vectors) / batch_s, 1), "single_ms": round(single_s / singles * 1000, 3),
            "recall@10": _recall(rows, exact), "short_lists": sum(len(r) < K for r in rows)}


def _selector_params(faiss, index, index_type: str, live: np.ndarray):
    """FAISS search parameters that keep only live ids, or None where the index type takes none."""
    selector = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(np.packbits(live, bitorder="little")))
    if index_type == "flat":
        return faiss.SearchParameters(sel=selector), selector
    if index_type == "hnsw":
        return faiss.SearchParametersHNSW(sel=selector, efSearch=faiss.downcast_index(index).hnsw.efSearch), selector
    if index_type == "ivf-flat":
        ivf = faiss.extract_index_ivf(index)
        return faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe), selector
    return None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the documents deleted")
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    parser.add_argument("--single-queries", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import faiss

    from arretrieve.api import Index
    from arretrieve.corpus import CorpusSource
    from arretrieve.corpus.queries import read_queries
    from arretrieve.encoding import EncodingOptions, encode_corpus
    from arretrieve.index import IndexSpec, IndexStore, Searcher, build_index
    from arretrieve.index.faiss_index import (TRAINED_TYPES, apply_search_params, create_index, plan_index,
                                               training_sample)
    from arretrieve.registry import Registry

    registry = Registry()
    entry = registry.resolve(args.model)
    source = CorpusSource(args.corpus)
    corpus_vectors = np.concatenate(list(encode_corpus(source, entry, EncodingOptions(show_progress=True)).iter_vectors()))
    corpus_vectors = np.ascontiguousarray(corpus_vectors, dtype=np.float32)
    queries = list(read_queries(args.queries).values())
    count = len(corpus_vectors)
    rng = np.random.default_rng(args.seed)
    deleted = np.sort(rng.choice(count, size=int(round(count * args.fraction)), replace=False))
    live = np.ones(count, dtype=bool)
    live[deleted] = False
    print(json.dumps({"vectors": count, "dim": int(corpus_vectors.shape[1]), "queries": len(queries),
                      "deleted": len(deleted), "model": entry.name, "faiss_threads": faiss.omp_get_max_threads(),
                      "machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp))
        for index_type in args.types:
            build_index(args.corpus, name=index_type, model=entry.name, spec=IndexSpec(index_type), store=store,
                        registry=registry, overwrite=True)
            folder = store.path(index_type)
            searcher = Searcher(folder, registry=registry)
            ids = searcher.ids
            row_of = {doc_id: row for row, doc_id in enumerate(ids)}
            query_vectors = searcher.embedder.encode(queries, role="query", batch_size=64)
            everything = np.ones(count, dtype=bool)
            exact_before, exact_after = (_exact_top(query_vectors, corpus_vectors, mask) for mask in (everything, live))
            rows = {"before": _measure_searcher(searcher, queries, query_vectors, row_of, exact_before, args.single_queries),
                    "before, raw FAISS": _measure_faiss(searcher.index, query_vectors, exact_before, args.single_queries)}

            started = time.perf_counter()
            Index(folder).delete([ids[r] for r in deleted])
            delete_s = time.perf_counter() - started
            after = Searcher(folder, registry=registry)
            rows["after (hidden at search)"] = _measure_searcher(after, queries, query_vectors, row_of, exact_after,
                                                                 args.single_queries)
            params, _selector = _selector_params(faiss, after.index, index_type, live)  # keep the bitmap alive
            if params is not None:
                rows["faiss-selector, raw FAISS"] = _measure_faiss(after.index, query_vectors, exact_after,
                                                                   args.single_queries, params=params)
            survivors = np.flatnonzero(live)  # the rebuild: what `_build` does, over the survivors
            plan = plan_index(IndexSpec(index_type), len(survivors), corpus_vectors.shape[1])
            sample = (training_sample([corpus_vectors[survivors]], len(survivors), plan.train_size, plan.seed)
                      if index_type in TRAINED_TYPES else None)
            rebuilt = create_index(plan, corpus_vectors.shape[1], sample)
            rebuilt.add(corpus_vectors[survivors])
            apply_search_params(rebuilt, plan.search)
            rows["rebuilt, raw FAISS"] = _measure_faiss(rebuilt, query_vectors, exact_after, args.single_queries,
                                                        to_row=survivors)
            base = rows["before"]
            for name, row in rows.items():
                print(json.dumps({"type": index_type, "method": name, **row, "delete_s": round(delete_s, 2),
                                  "single_ms_vs_before": round(row["single_ms"] / base["single_ms"], 2)}), flush=True)


if __name__ == "__main__":
    main()
