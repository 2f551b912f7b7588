"""Exact dense scoring, the one definition of it outside FAISS: the inner product of L2-normalised
float32 vectors (their cosine), best first, ties kept in document order. The searcher re-scores
IVF-PQ's candidates with it, the in-training retrieval check ranks a small corpus with it, and the
miner scores its candidates with it."""

from __future__ import annotations

import numpy as np


def dense_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """(Q, D) scores of every query (Q, dim) against every document (D, dim)."""
    return queries @ documents.T


def best_first(scores: np.ndarray, depth: int | None = None) -> np.ndarray:
    """Positions of the `depth` best scores along the last axis, best first (a stable order: ties
    keep their document order)."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order if depth is None else order[..., :depth]
