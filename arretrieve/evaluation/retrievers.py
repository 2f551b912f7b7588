"""The retrievers `arr beir-eval` compares: registry models (through `arr index`'s own code) and BM25."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..index import BuildOptions, IndexStore, Searcher, build_index
from ..registry import Registry
from .beir_data import BeirDataset, beir_cache_dir

BM25 = "bm25"


@dataclass
class Retrieval:
    """Ranked results per query plus what produced them."""

    results: dict[str, dict[str, float]]
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def dense_retrieval(dataset: BeirDataset, model: str, registry: Registry, options: BuildOptions,
                    index_type: str, top_k: int) -> Retrieval:
    """Encode (or reuse the cached encoding of) the corpus, build the index, search the queries."""
    store = IndexStore(beir_cache_dir() / "indexes" / f"{dataset.name}-{dataset.fingerprint[:12]}")
    started = time.perf_counter()
    manifest = build_index(dataset.folder, name=model, model=model, index_type=index_type, options=options,
                           store=store, registry=registry, overwrite=True)
    indexed = time.perf_counter()
    searcher = Searcher(store.path(model), registry=registry, device=options.device)
    query_vectors = searcher.embedder.encode(list(dataset.queries.values()), role="query", batch_size=options.batch_size)
    ranked = searcher.search_ids(query_vectors, top_k)
    finished = time.perf_counter()
    results = {qid: dict(hits) for qid, hits in zip(dataset.queries, ranked)}
    entry = searcher.entry
    settings = {
        "model": entry.name,
        "kind": entry.kind,
        "fingerprint": entry.fingerprint,
        "base": entry.base,
        "weights": entry.weights,
        "prompts": dict(entry.prompts),
        "num_compress_tokens": entry.num_compress_tokens,
        "pooling": entry.pooling,
        "max_length": entry.max_length,
        "dtype": manifest.encoder["dtype"],
        "batch_size": options.batch_size,
        "index_type": manifest.index_type,
        "index_params": manifest.index_params,
        "queries_truncated": searcher.embedder.last_stats.truncated,
    }
    return Retrieval(results, settings, {"index": round(indexed - started, 2), "search": round(finished - indexed, 2)})


def bm25_retrieval(dataset: BeirDataset, top_k: int) -> Retrieval:
    """bm25s, Lucene variant (k1=1.5, b=0.75), English stopwords, title and text joined."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    started = time.perf_counter()
    documents = list(dataset.corpus.documents())
    retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    retriever.index(bm25s.tokenize([d.full_text for d in documents], stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize(list(dataset.queries.values()), stopwords="en", show_progress=False)
    rows, scores = retriever.retrieve(tokens, k=min(top_k, len(documents)), show_progress=False)
    results = {
        qid: {documents[row].id: float(score) for row, score in zip(rows[i], scores[i]) if score > 0}
        for i, qid in enumerate(dataset.queries)
    }
    settings = {"model": BM25, "kind": "bm25", "library": f"bm25s {getattr(bm25s, '__version__', '?')}",
                "method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en", "stemmer": None}
    return Retrieval(results, settings, {"index_and_search": round(time.perf_counter() - started, 2)})
