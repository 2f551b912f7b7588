"""The retrievers `arr beir-eval` compares: registry models (through `arr index`'s own code) and BM25."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..encoding import EncodingOptions
from ..errors import ArrError
from ..index import IndexSpec, IndexStore, Searcher, build_index
from ..index.lexical import BM25_SETTINGS, build_bm25, search_bm25
from ..registry import Registry
from ..home import beir_cache_dir
from .beir_data import BeirDataset

BM25 = "bm25"
HYBRID_PREFIX = "bm25+"  # `bm25+NAME`: BM25 fused with model NAME, as `arr search --mode hybrid`
RERANK_SUFFIX = "@rerank"  # `NAME@rerank20`: its top 20 rescored by the likelihood reranker (`--rerank likelihood`)


@dataclass(frozen=True)
class ModelSpec:
    """One `--models` entry: a registry model, searched dense or hybrid, optionally reranked."""

    model: str
    mode: str = "dense"
    rerank_depth: int | None = None


def parse_model_spec(spec: str, registry: Registry) -> ModelSpec:
    """`NAME`, `bm25+NAME`, `NAME@rerankN` or `bm25+NAME@rerankN`, checked against the registry."""
    name, mode, depth = spec, "dense", None
    if name.startswith(HYBRID_PREFIX):
        name, mode = name.removeprefix(HYBRID_PREFIX), "hybrid"
    if RERANK_SUFFIX in name:
        name, _, digits = name.rpartition(RERANK_SUFFIX)
        if not digits.isdigit() or int(digits) < 1:
            raise ArrError(f"{spec!r}: after {RERANK_SUFFIX} comes how many top hits are rescored, e.g. {name}{RERANK_SUFFIX}20")
        depth = int(digits)
    entry = registry.get(name)
    if depth is not None and entry.kind != "autoregembed":
        raise ArrError(f"{spec!r}: the likelihood reranker needs an AutoRegEmbed model's decoder; {name!r} is a "
                       f"{entry.kind} model")
    return ModelSpec(name, mode, depth)


@dataclass
class Retrieval:
    """Ranked results per query plus what produced them."""

    results: dict[str, dict[str, float]]
    settings: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def dataset_index_store(dataset: BeirDataset) -> IndexStore:
    """Where `arr beir-eval` keeps the indexes it builds over one version of a BEIR set."""
    return IndexStore(beir_cache_dir() / "indexes" / f"{dataset.name}-{dataset.fingerprint[:12]}")


def dense_retrieval(dataset: BeirDataset, model: str, registry: Registry, encoding: EncodingOptions,
                    index_type: str, top_k: int, mode: str = "dense", rerank_depth: int | None = None) -> Retrieval:
    """Encode (or reuse the cached encoding of) the corpus, build the index, search the queries
    (`mode` hybrid fuses them with BM25 as `arr search` does; `rerank_depth`: the likelihood
    reranker over each query's top that many)."""
    store = dataset_index_store(dataset)
    started = time.perf_counter()
    manifest = build_index(dataset.folder, name=model, model=model, spec=IndexSpec(index_type), encoding=encoding,
                           store=store, registry=registry, overwrite=True, bm25=mode == "hybrid")
    indexed = time.perf_counter()
    searcher = Searcher(store.path(model), registry=registry, device=encoding.device)
    ranked = searcher.search_ids(list(dataset.queries.values()), top_k, mode=mode, batch_size=encoding.batch_size,
                                 rerank_depth=rerank_depth)
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
        "batch_size": encoding.batch_size,
        "index_type": manifest.index_type,
        "index_params": manifest.index_params,
        "queries_truncated": searcher.embedder.last_stats.truncated,
    }
    if mode == "hybrid":
        from ..index.searcher import HYBRID

        settings.update({"model": HYBRID_PREFIX + entry.name, "mode": mode, **HYBRID, "bm25": BM25_SETTINGS})
    if rerank_depth:
        from ..index.searcher import LIKELIHOOD_RERANK

        settings.update({"model": f"{settings['model']}{RERANK_SUFFIX}{rerank_depth}",
                         "rerank": {"reranker": "likelihood", "depth": rerank_depth, "weight": LIKELIHOOD_RERANK["weight"],
                                    "states": "recomputed from each hit's text"}})
    return Retrieval(results, settings, {"index": round(indexed - started, 2), "search": round(finished - indexed, 2)})


def bm25_retrieval(dataset: BeirDataset, top_k: int) -> Retrieval:
    """The toolkit's BM25 (`index/lexical.py`) over the corpus, title and text joined."""
    import bm25s

    started = time.perf_counter()
    documents = list(dataset.corpus.documents())
    scores, rows = search_bm25(build_bm25([d.full_text for d in documents]), list(dataset.queries.values()),
                               top_k, len(documents))
    results = {qid: {documents[row].id: float(score) for row, score in zip(rows[i], scores[i]) if row >= 0}
               for i, qid in enumerate(dataset.queries)}
    settings = {"model": BM25, "kind": "bm25", "library": f"bm25s {getattr(bm25s, '__version__', '?')}", **BM25_SETTINGS}
    return Retrieval(results, settings, {"index_and_search": round(time.perf_counter() - started, 2)})
