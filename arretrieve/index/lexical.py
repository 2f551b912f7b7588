"""The lexical side of an index: BM25 over the same rows as the FAISS index, and the fusion of both.

One BM25 for the whole toolkit (`arr index`, `arr search --mode`, `arr beir-eval`'s `bm25`): bm25s,
Lucene variant (k1 1.5, b 0.75), its English stop words, the English Snowball stemmer (PyStemmer),
over each row's title and text. Saved with bm25s' own format (numpy arrays read with
allow_pickle=False, a JSON vocabulary) and `arr_bm25.json`, which says how its tokens were stemmed;
an index built before stemming has none and keeps searching unstemmed until it is rebuilt.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ArrError

# Stemming: Debian dev nDCG@10 0.7988 against 0.7683 without (docs/studies/bm25-stemming.md).
BM25_SETTINGS = {"method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "en", "stemmer": "english"}
SETTINGS_FILE = "arr_bm25.json"
MODES = ("dense", "bm25", "hybrid")
FUSIONS = ("weighted", "rrf")
# Hybrid search fuses this many candidates from each side (more when k is larger).
FUSION_DEPTH = 100
RRF_K = 60


def _bm25s():
    try:
        import bm25s
    except ImportError:
        raise ArrError("BM25 needs bm25s (a dependency of arretrieve): pip install bm25s") from None
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    return bm25s


def _stemmer(language: str | None):
    if language is None:
        return None
    try:
        import Stemmer
    except ImportError:
        raise ArrError("stemmed BM25 needs PyStemmer (a dependency of arretrieve): pip install PyStemmer") from None
    return Stemmer.Stemmer(language)


def tokenize(texts: Sequence[str], stemmer: str | None = BM25_SETTINGS["stemmer"]) -> list[list[str]]:
    return _bm25s().tokenize(list(texts), stopwords=BM25_SETTINGS["stopwords"], stemmer=_stemmer(stemmer),
                             return_ids=False, show_progress=False)


def build_bm25(texts: Sequence[str], stemmer: str | None = BM25_SETTINGS["stemmer"]):
    """A bm25s retriever over `texts` (row i = text i); `stemmer` is recorded on it (`arr_stemmer`)."""
    retriever = _bm25s().BM25(method=BM25_SETTINGS["method"], k1=BM25_SETTINGS["k1"], b=BM25_SETTINGS["b"])
    tokens = tokenize(texts, stemmer)
    # Token ids in order of first occurrence: bm25s numbers a set of strings, whose order changes
    # with every process's hash seed, so the same texts gave other files on every run.
    vocabulary: dict[str, int] = {}
    ids = [[vocabulary.setdefault(token, len(vocabulary)) for token in row] for row in tokens]
    if not vocabulary:  # no text has a token (all stop words or one letter): bm25s needs its empty token
        vocabulary[""] = 0
    retriever.index((ids, vocabulary), show_progress=False)
    retriever.arr_stemmer = stemmer
    return retriever


def search_bm25(retriever, queries: Sequence[str], depth: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of shape (queries, depth) like FAISS: rows -1 where fewer texts match."""
    depth = min(depth, count)
    # Queries are stemmed as the texts were (an index built before stemming has none).
    tokens = tokenize(queries, getattr(retriever, "arr_stemmer", None))
    rows, scores = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=1)
    rows, scores = np.asarray(rows, dtype=np.int64), np.asarray(scores, dtype=np.float32)
    rows[scores <= 0] = -1  # no query term in that text: not a match
    return scores, rows


def save_bm25(retriever, folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted attempt left
    retriever.save(str(folder), show_progress=False)
    (folder / SETTINGS_FILE).write_text(json.dumps({"stemmer": getattr(retriever, "arr_stemmer", None)}) + "\n",
                                        encoding="utf-8")


def bm25_stemmer(folder: Path) -> str | None:
    """How a saved BM25 side stemmed its tokens (None: not at all, as before stemming existed)."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        stemmer = json.loads(path.read_text(encoding="utf-8")).get("stemmer")
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise ArrError(f"{path} is damaged; rebuild the index with `arr index --overwrite`") from None
    if stemmer is not None and not isinstance(stemmer, str):
        raise ArrError(f"{path} names no stemmer; rebuild the index with `arr index --overwrite`")
    return stemmer


def load_bm25(folder: Path):
    try:
        retriever = _bm25s().BM25.load(str(folder), load_corpus=False, allow_pickle=False)
        retriever.arr_stemmer = bm25_stemmer(folder)
        return retriever
    except (OSError, ValueError, KeyError) as exc:
        raise ArrError(f"the BM25 index {folder} is missing or damaged ({exc}); rebuild with `arr index --overwrite`") from None


def fuse(dense: tuple[np.ndarray, np.ndarray], lexical: tuple[np.ndarray, np.ndarray], depth: int,
         fusion: str, weight: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the top `depth` rows of both candidate lists by fused score.

    weighted: weight × dense + (1 − weight) × BM25, each min-max normalised over its own candidates
    (a row missing from one list scores 0 there). rrf: Σ 1 / (60 + rank) over the lists."""
    if fusion not in FUSIONS:
        raise ArrError(f"unknown fusion {fusion!r}; use {' or '.join(FUSIONS)}")
    fused_scores = np.full((dense[0].shape[0], depth), -np.inf, dtype=np.float32)
    fused_rows = np.full((dense[0].shape[0], depth), -1, dtype=np.int64)
    for q in range(dense[0].shape[0]):
        combined: dict[int, float] = {}
        for (scores, rows), share in ((dense, weight), (lexical, 1.0 - weight)):
            valid = rows[q] >= 0
            row_ids, values = rows[q][valid], scores[q][valid].astype(np.float64)
            if not len(row_ids):
                continue
            if fusion == "rrf":
                contributions = 1.0 / (RRF_K + np.arange(1, len(row_ids) + 1))
            else:
                spread = values.max() - values.min()
                contributions = share * ((values - values.min()) / spread if spread > 0 else np.ones_like(values))
            for row, value in zip(row_ids.tolist(), contributions.tolist()):
                combined[row] = combined.get(row, 0.0) + value
        best = sorted(combined.items(), key=lambda item: (-item[1], item[0]))[:depth]
        for i, (row, value) in enumerate(best):
            fused_rows[q, i], fused_scores[q, i] = row, value
    return fused_scores, fused_rows
