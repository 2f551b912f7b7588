"""Searching an index with the model that built it."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..corpus.document import Document, not_text
from ..errors import ArrError
from ..registry import Registry
from .docstore import DocStore
from .exact import best_first, dense_scores
from .faiss_index import (SEARCH_SETTINGS, apply_search_params, check_search_params, current_search_params, faiss_module,
                          to_gpu_if_available)
from .filters import check_where, matching_rows
from .lexical import FUSION_DEPTH, MODES, fuse, load_bm25, search_bm25
from .manifest import IndexManifest, model_for_index
from .ondisk import read_on_disk

# Hybrid search: weighted score fusion with this weight on the dense side, chosen on Debian dev with
# the stemmed BM25 (docs/studies/bm25-stemming.md); the default mode of an index that has a BM25 side.
HYBRID = {"fusion": "weighted", "weight": 0.6}
DEFAULT_MODE = "hybrid"
# Reranking by the decoder (`rerank="likelihood"`): how many top hits are rescored, and the fused
# weight on the likelihood, chosen on dev (docs/studies/label-free-adaptation.md).
RERANKERS = ("likelihood",)
LIKELIHOOD_RERANK = {"depth": 20, "weight": 0.2}


@dataclass
class Hit:
    rank: int
    score: float
    id: str
    title: str
    text: str
    chunk: str | None = None
    metadata: dict | None = None
    explanation: str | None = None  # with explain: what the decoder writes from the hit's states

    def to_dict(self) -> dict:
        payload = {"rank": self.rank, "score": self.score, "id": self.id, "title": self.title, "text": self.text}
        if self.metadata is not None:
            payload["metadata"] = self.metadata
        if self.chunk is not None:
            payload["chunk"] = self.chunk
        if self.explanation is not None:
            payload["explanation"] = self.explanation
        return payload


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SearchOptions:
    """How a search runs, declared once: `Searcher.search`, `arretrieve.Index.search`, the server's
    requests (derived from these fields) and `arr search` all take them."""

    k: int = _option(10, "How many results.")
    mode: str | None = _option(None, f"{', '.join(MODES)} (default: hybrid when the index has a BM25 side, else dense).")
    collapse: bool | None = _option(None, "On a chunked index, one hit per document (default) or every chunk (false).")
    nprobe: int | None = _option(None, "IVF lists to visit (IVF index types).")
    ef_search: int | None = _option(None, "HNSW search depth (hnsw, hnsw-pca).")
    rerank_factor: int | None = _option(None, "Re-score k x this many candidates exactly (ivf-pq, hnsw-pca).")
    where: dict | None = _option(None, 'Only rows whose metadata match, e.g. {"section": "utils"} or '
                                       '{"year": {"gte": 2020}} (see index/filters.py).')
    explain: bool = _option(False, "For each hit, what the model's frozen decoder writes from the hit's compressed "
                                   "states: what the model read from it (AutoRegEmbed models; the decoder loads once).")
    rerank: str | None = _option(None, "likelihood: rescore the top hits by the mean log-likelihood of the query under the "
                                       "model's frozen decoder after each hit's compressed states, fused with the "
                                       "first-stage score (AutoRegEmbed models; the decoder loads once).")
    rerank_depth: int | None = _option(None, f"With rerank: how many top hits are rescored (default {LIKELIHOOD_RERANK['depth']}; "
                                             "at least k are).")

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ArrError("k must be at least 1")
        if self.mode is not None and self.mode not in MODES:
            raise ArrError(f"unknown mode {self.mode!r}; use {', '.join(MODES)}")
        if self.where is not None:
            check_where(self.where)
        if self.rerank is not None and self.rerank not in RERANKERS:
            raise ArrError(f"unknown reranker {self.rerank!r}; use {', '.join(RERANKERS)}")
        if self.rerank_depth is not None and self.rerank is None:
            raise ArrError("rerank_depth says how many hits the reranker rescores: give rerank too")
        for name, value in {**self.search_params(), "rerank_depth": self.rerank_depth or 1}.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArrError(f"{name} must be a whole number of at least 1")

    @property
    def rescored(self) -> int:
        """How many top hits the reranker rescores (0 without one)."""
        return 0 if self.rerank is None else max(self.k, self.rerank_depth or LIKELIHOOD_RERANK["depth"])

    def search_params(self) -> dict[str, int]:
        """The index-type settings given (nprobe, ef_search, rerank_factor)."""
        return {k: getattr(self, k) for k in ("nprobe", "ef_search", "rerank_factor") if getattr(self, k) is not None}


def check_queries(queries: Sequence[str]) -> None:
    """The one check of query texts, made before anything loads where the caller can."""
    if not queries or any(not isinstance(q, str) or not q.strip() for q in queries):
        raise ArrError("empty query")
    for number, query in enumerate(queries, start=1):
        problem = not_text(query)
        if problem:
            raise ArrError(f"query {number} {problem}")


def likelihood_fusion(first: np.ndarray, likelihood: np.ndarray, weight: float) -> np.ndarray:
    """Fused scores of a ranked list whose first `len(likelihood)` hits were rescored: each score
    min-max normalised over those hits, (1 - weight) x first-stage + weight x likelihood. Hits below
    them (none when every hit was rescored) count as the lowest likelihood, so they stay below."""
    n = len(likelihood)
    low, span = first[:n].min(), np.ptp(first[:n])
    dense = (first - low) / (span if span > 0 else 1.0)
    span = np.ptp(likelihood)
    generative = (likelihood - likelihood.min()) / span if span > 0 else np.zeros(n)
    fused = (1 - weight) * dense
    fused[:n] += weight * generative
    return fused


def _hit_texts(hits: Sequence[Hit]) -> list[str]:
    """The texts the hits' vectors were encoded from (title and text, as the index read them)."""
    return [Document(h.chunk or h.id, h.title, h.text).full_text for h in hits]


class Searcher:
    """Loads an index, refuses it if its model's registry entry changed, and answers queries."""

    def __init__(self, folder: Path, registry: Registry | None = None, device: str = "auto",
                 search_params: dict[str, int] | None = None):
        self.folder = folder
        self.manifest = manifest = IndexManifest.load(folder)
        self.entry = model_for_index(manifest, registry or Registry())
        faiss = faiss_module()
        index_path = folder / manifest.files["index"]
        lists = manifest.files.get("lists")
        try:
            index = read_on_disk(index_path, folder / lists) if lists else faiss.read_index(str(index_path))
        except (RuntimeError, ValueError, OSError):
            raise ArrError(f"{index_path} is missing or corrupted; rebuild the index with `arr index --overwrite`") from None
        if index.ntotal != manifest.count or index.d != manifest.dim:
            raise ArrError(f"{index_path} does not match its manifest (vectors or dimension differ); rebuild the index")
        check_search_params(manifest.index_type, search_params or {})
        recorded = manifest.index_params.get("search", {})
        unknown = sorted(set(recorded) - set(SEARCH_SETTINGS.get(manifest.index_type, ())))
        if unknown:  # e.g. an index built before a setting was renamed: it would be silently ignored
            raise ArrError(f"index {manifest.name!r} records search settings this version does not use "
                           f"({', '.join(unknown)}); rebuild it with `arr index --overwrite`")
        # On-disk lists stay where they are: copying them to a GPU would read them all into memory.
        self.index = index if lists else to_gpu_if_available(index)
        self.params = {**recorded, **(search_params or {})}
        apply_search_params(self.index, self.params)
        self._graph_width = self.params.get("ef_search")
        self.docstore = DocStore(folder, manifest.files["offsets"], manifest.count, manifest.docs_bytes)
        self.vectors = None
        if manifest.files.get("vectors"):
            self.vectors = np.memmap(folder / manifest.files["vectors"], dtype=np.float32, mode="r",
                                     shape=(manifest.count, manifest.dim))
        self.hidden = manifest.deleted_rows(folder)
        self._hidden_mask = None
        if len(self.hidden):
            self._hidden_mask = np.zeros(manifest.count, dtype=bool)
            self._hidden_mask[self.hidden] = True
        self.chunked = bool(manifest.encoder.get("chunking"))
        self.bm25 = load_bm25(folder / manifest.files["bm25"]) if manifest.files.get("bm25") else None
        self.default_mode = DEFAULT_MODE if self.bm25 is not None else "dense"
        self._device = device
        self._embedder = None
        self._reader = None  # the model with its frozen decoder, for explain
        self._ids: list[str] | None = None
        self._rows: dict[str, int] | None = None
        self._metadata: list[dict] | None = None

    @property
    def embedder(self):
        """The query encoder, loaded on first use (same model and dtype as the documents)."""
        if self._embedder is None:
            from ..encoding import load_embedder

            self._embedder = load_embedder(self.entry, device=self._device, dtype=self.manifest.encoder["dtype"], traced=True)
        return self._embedder

    @embedder.setter
    def embedder(self, embedder) -> None:
        """Share one loaded model between indexes built with the same entry and dtype."""
        if embedder.entry.fingerprint != self.entry.fingerprint:
            raise ArrError(f"index {self.manifest.name!r} needs model {self.entry.name!r}, not {embedder.entry.name!r}")
        self._embedder = embedder

    def _candidates(self, query_vectors: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        depth = min(depth, self.manifest.count)
        factor = self.params.get("rerank_factor", 1)
        candidates = min(depth * factor, self.manifest.count)
        if self._graph_width is not None:  # FAISS does not widen a graph search narrower than its result list
            width = max(self.params["ef_search"], candidates)
            if width != self._graph_width:
                apply_search_params(self.index, {"ef_search": width})
                self._graph_width = width
        if self.manifest.index_type == "hnsw-pca":  # FAISS re-ranks inside the index (k_factor set at load)
            return self.index.search(query_vectors, depth)
        scores, rows = self.index.search(query_vectors, candidates)
        if self.vectors is not None:  # exact inner products for IVF-PQ's candidates, from the vectors kept on disk
            for q, row in enumerate(rows):
                valid = np.sort(row[row >= 0])  # ascending rows read the memory-mapped file in order
                exact = dense_scores(query_vectors[q], np.asarray(self.vectors[valid]))
                order = best_first(exact)
                rows[q, : len(valid)], scores[q, : len(valid)] = valid[order], exact[order]
            rows, scores = rows[:, :depth], scores[:, :depth]
        return scores, rows

    def _check_mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode
        if mode not in MODES:
            raise ArrError(f"unknown mode {mode!r}; use {', '.join(MODES)}")
        if mode != "dense" and self.bm25 is None:
            raise ArrError(f"index {self.manifest.name!r} has no BM25 side (built with --no-bm25); "
                           "use --mode dense or rebuild it")
        return mode

    @property
    def live_count(self) -> int:
        """Rows a search can return: all but those deletes hid."""
        return self.manifest.count - len(self.hidden)

    def _visible(self, ranked: tuple[np.ndarray, np.ndarray], excluded: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Excluded rows (deleted, or not matching `where`) out of a candidate list, as rows -1
        (what FAISS gives for no match)."""
        scores, rows = ranked
        if excluded is not None:
            gone = (rows >= 0) & excluded[np.clip(rows, 0, None)]
            rows, scores = np.where(gone, -1, rows), np.where(gone, -np.inf, scores).astype(np.float32)
        return scores, rows

    def _ranked(self, queries: Sequence[str], query_vectors: np.ndarray | None, depth: int,
                mode: str, excluded: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if mode == "dense":
            return self._visible(self._candidates(query_vectors, depth), excluded)
        if mode == "bm25":
            return self._visible(search_bm25(self.bm25, queries, depth, self.manifest.count), excluded)
        each = max(depth, FUSION_DEPTH)
        return fuse(self._visible(self._candidates(query_vectors, each), excluded),
                    self._visible(search_bm25(self.bm25, queries, each, self.manifest.count), excluded),
                    min(depth, self.manifest.count), HYBRID["fusion"], HYBRID["weight"])

    def _excluded(self, where: dict | None) -> tuple[np.ndarray | None, int]:
        """The rows a search must not return (deleted, or not matching `where`), and how many may be."""
        if where is None:
            return self._hidden_mask, self.live_count
        if self._metadata is None:
            self._metadata = list(self.docstore.iter_metadata())
        excluded = ~matching_rows(check_where(where), self._metadata)
        if self._hidden_mask is not None:
            excluded |= self._hidden_mask
        return excluded, int(len(excluded) - excluded.sum())

    def _first_depth(self, k: int, collapse: bool, allowed: int) -> int:
        """How deep to search first: k (4k where chunks collapse into documents) widened by the share
        of rows excluded, plus a margin of about two standard deviations of how many excluded rows
        land in the top places, so that one pass usually finds k allowed rows; `_deepening` goes
        deeper when it does not. Every place searched widens an HNSW graph search, so not deeper."""
        depth = k * 4 if collapse else k
        if allowed < self.manifest.count:
            depth = math.ceil((depth + 2 * math.sqrt(depth) + 2) * self.manifest.count / max(allowed, 1))
        return min(depth, self.manifest.count)

    def _deepening(self, queries: Sequence[str], query_vectors: np.ndarray | None, k: int, mode: str,
                   excluded: np.ndarray | None, allowed: int, collapse: bool, results_of) -> list:
        """`results_of(scores, rows)` per query from a search `_first_depth` deep, searched again four
        times deeper while a query has fewer than k (or all the allowed) results: excluded rows and
        chunks of one document use up places."""
        depth = self._first_depth(k, collapse, allowed)
        while True:
            scores, rows = self._ranked(queries, query_vectors, depth, mode, excluded)
            results = [results_of(s, r) for s, r in zip(scores, rows)]
            short = any(len(found) < min(k, allowed) for found in results)
            if not ((collapse or excluded is not None) and short and depth < self.manifest.count):
                return results
            depth = min(depth * 4, self.manifest.count)

    def _query_vectors(self, queries: Sequence[str], mode: str, batch_size: int = 32) -> np.ndarray | None:
        return None if mode == "bm25" else self.embedder.encode(list(queries), role="query", batch_size=batch_size)

    def search(self, queries: Sequence[str], k: int = 10, collapse: bool | None = None, mode: str | None = None,
               **search_params: int | None) -> list[list[Hit]]:
        """Top-k hits per query (`SearchOptions` says what each option does); chunked indexes give
        one hit per document unless collapse=False. Index-type settings given here (nprobe,
        ef_search, rerank_factor) apply to this call only."""
        options = SearchOptions(k=k, mode=mode, collapse=collapse, **search_params)
        check_queries(queries)
        mode = self._check_mode(options.mode)
        collapse = self.chunked if collapse is None else collapse
        excluded, allowed = self._excluded(options.where)
        for wanted, what in ((options.explain, "explain"), (options.rerank, "rerank")):
            if wanted and self.entry.kind != "autoregembed":
                raise ArrError(f"{what} reads a hit's compressed states with the decoder of an AutoRegEmbed model; "
                               f"{self.entry.name!r} is a {self.entry.kind} model")
        depth = options.rescored or k
        with self._search_settings(options.search_params()):
            found = self._deepening(queries, self._query_vectors(queries, mode), depth, mode, excluded, allowed, collapse,
                                    lambda scores, rows: self._hits(scores, rows, depth, collapse))
        if options.rerank:
            found = [self._reranked(query, hits)[:k] for query, hits in zip(queries, found)]
        if options.explain:
            self._explain([hit for hits in found for hit in hits])
        return found

    @property
    def decoder_model(self):
        """The index's model with its frozen decoder, loaded on first use (the search model never
        carries one): for explain and the likelihood reranker."""
        if self._reader is None:
            from ..modeling.loading import load_autoregembed
            from ..runtime import resolve_device, resolve_dtype

            device = resolve_device(self._device)
            self._reader = load_autoregembed(self.entry, resolve_dtype(self.manifest.encoder["dtype"], device), device,
                                             frozen_decoder=True)
        return self._reader

    def _explain(self, hits: list[Hit]) -> None:
        """Each hit's explanation, from the text its vector was encoded from."""
        if not hits:
            return
        for hit, written in zip(hits, self.decoder_model.read_back(_hit_texts(hits), self.entry.template("document"))):
            hit.explanation = written

    def _reranked(self, query: str, hits: list[Hit]) -> list[Hit]:
        """The hits reordered by their fused score (`likelihood_fusion`), ranks and scores renewed;
        the states are recomputed from each hit's text (the text its vector was encoded from)."""
        if not hits:
            return hits
        fused = self._fused(query, [h.score for h in hits], _hit_texts(hits))
        order = np.argsort(-fused, kind="stable")
        return [dataclasses.replace(hits[i], rank=rank, score=float(fused[i])) for rank, i in enumerate(order, start=1)]

    def _fused(self, query: str, first: Sequence[float], texts: Sequence[str]) -> np.ndarray:
        """`likelihood_fusion` of a ranked list whose first len(texts) hits are rescored."""
        likelihood = self.decoder_model.query_likelihood(list(texts), self.entry.template("document"), query).numpy()
        return likelihood_fusion(np.asarray(first, dtype=np.float64), likelihood, LIKELIHOOD_RERANK["weight"])

    @contextlib.contextmanager
    def _search_settings(self, overrides: dict[str, int]) -> Iterator[None]:
        """The index's search settings with `overrides` for one call, then back to those it opened with."""
        if not overrides:
            yield
            return
        check_search_params(self.manifest.index_type, overrides)
        opened = self.params
        before = current_search_params(self.index, self.manifest.index_type)
        self.params = {**opened, **overrides}
        apply_search_params(self.index, self.params)
        self._graph_width = self.params.get("ef_search")
        try:
            yield
        finally:
            self.params = opened
            apply_search_params(self.index, before)
            self._graph_width = before.get("ef_search")

    @property
    def ids(self) -> list[str]:
        """Every row's id, in row order (read once)."""
        if self._ids is None:
            self._ids = [doc_id for doc_id, _ in self.docstore.iter_ids()]
        return self._ids

    def document(self, doc_id: str) -> Document | None:
        """The stored row of an id (a chunk's id in a chunked index), or None."""
        if self._rows is None:
            hidden = set(self.hidden.tolist())
            self._rows = {doc: row for row, doc in enumerate(self.ids) if row not in hidden}
        row = self._rows.get(doc_id)
        return None if row is None else self.docstore.get([row])[0]

    def search_ids(self, queries: Sequence[str], k: int, mode: str = "dense", batch_size: int = 32,
                   rerank_depth: int | None = None) -> list[list[tuple[str, float]]]:
        """(document id, score) per query, reading texts only for the reranker: what evaluation
        needs. `rerank_depth`: the likelihood reranker rescores each query's top that many, the rest
        following in their order."""
        mode = self._check_mode(mode)
        if rerank_depth and self.entry.kind != "autoregembed":
            raise ArrError(f"the likelihood reranker needs an AutoRegEmbed model's decoder; {self.entry.name!r} is a "
                           f"{self.entry.kind} model")
        ranked = self._deepening(queries, self._query_vectors(queries, mode, batch_size), k, mode, self._hidden_mask,
                                 self.live_count, False,
                                 lambda scores, rows: [(self.ids[r], float(s)) for s, r in zip(scores, rows) if r >= 0][:k])
        if not rerank_depth:
            return ranked
        reranked = []
        for query, hits in zip(queries, ranked):
            texts = [self.document(doc_id).full_text for doc_id, _ in hits[:rerank_depth]]
            fused = self._fused(query, [score for _, score in hits], texts) if hits else np.zeros(0)
            reranked.append([(hits[i][0], float(fused[i])) for i in np.argsort(-fused, kind="stable")])
        return reranked

    def _hits(self, scores: np.ndarray, rows: np.ndarray, k: int, collapse: bool) -> list[Hit]:
        keep = [(float(s), int(r)) for s, r in zip(scores, rows) if r >= 0]
        documents = self.docstore.get(r for _, r in keep)
        hits, seen = [], set()
        for (score, _), doc in zip(keep, documents):
            key = doc.doc_id if collapse else doc.id
            if key in seen:
                continue
            seen.add(key)
            hits.append(Hit(len(hits) + 1, score, key, doc.title, doc.text, chunk=doc.id if collapse else None,
                            metadata=doc.metadata))
            if len(hits) == k:
                break
        return hits
