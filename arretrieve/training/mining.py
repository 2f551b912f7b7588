"""Hard-negative mining: for each (query, positive) row, candidates a retriever ranks high that are
not the positive, written as training triplets (`arr mine-negatives`).

The shape of sentence-transformers' `mine_hard_negatives` and FlagEmbedding's `hn_mine`: rank a
corpus (by default every positive and negative of the rows themselves) with BM25 or a registry
model, drop the positive, drop candidates scoring at least `max_score_ratio` × the positive's score
(likely unlabelled positives), then take the best `negatives` of the top `depth` left, or sample
them. The rows' own negatives can follow the mined ones, so `--num-negatives` picks how many of each.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import ArrError
from ..home import write_atomic
from .config import FieldMap
from .data import checked_rows, row_text
from .setting import setting

log = logging.getLogger(__name__)

SAMPLINGS = ("top", "random")
# Queries scored at once: bounds the (chunk x corpus) score matrix.
SCORE_CHUNK = 256


@dataclass(frozen=True)
class MiningSettings:
    """How negatives are picked; `arr mine-negatives` derives its flags from these fields."""

    negatives: int = setting(1, "Negatives mined per row.")
    depth: int = setting(10, "Pick them among this many best-ranked candidates left after the filters.")
    max_score_ratio: float | None = setting(0.95, "Drop candidates scoring at least this times the positive's score "
                                                  "(likely unlabelled positives); 0 turns it off.")
    sampling: str = setting("random", "random (among the top --depth) or top.")
    seed: int = setting(0, "Seed of the random sampling.")
    keep_negatives: bool = setting(True, "Keep each row's own negatives after the mined ones.",
                                   flag="--keep-negatives/--drop-negatives")

    def check(self) -> None:
        if self.negatives < 1:
            raise ArrError("mine at least one negative per row")
        if self.depth < self.negatives:
            raise ArrError(f"--depth {self.depth} leaves fewer candidates than --negatives {self.negatives}")
        if self.sampling not in SAMPLINGS:
            raise ArrError(f"unknown sampling {self.sampling!r}; use {' or '.join(SAMPLINGS)}")
        if self.max_score_ratio is not None and self.max_score_ratio <= 0:
            raise ArrError("--max-score-ratio must be positive (or left out to keep every candidate)")


@dataclass
class MinedRow:
    query: str
    pos: str
    negs: list[str]


@dataclass
class MiningReport:
    rows: int = 0
    corpus: int = 0
    mined: int = 0
    # Rows where fewer than `negatives` candidates survived the filters (their mined list is shorter).
    short_rows: int = 0
    filtered_by_ratio: int = 0
    retriever: str = ""
    short_examples: list[int] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.mined} negatives mined with {self.retriever} for {self.rows} rows over {self.corpus} "
                f"candidate texts; {self.filtered_by_ratio} candidates dropped as scoring too close to the positive")
        if self.short_rows:
            text += (f"; {self.short_rows} rows got fewer negatives than asked (e.g. rows "
                     f"{', '.join(map(str, self.short_examples))})")
        return text


# (query row numbers) -> (len(rows), corpus size) scores, higher = more similar
Scorer = Callable[[Sequence[int]], np.ndarray]


def read_pairs(source: str, fields: FieldMap, limit: int | None = None) -> list[MinedRow]:
    """Rows with a query and a positive; their negatives (string or list) are kept when present."""
    rows, _ = checked_rows(source, limit)
    pairs = []
    for row in rows:
        negs = (row.fields or {}).get(fields.neg) or []
        if isinstance(negs, str):
            negs = [negs]
        if not isinstance(negs, list) or not all(isinstance(n, str) for n in negs):
            raise ArrError(f"{row.location}: field {fields.neg!r} must be a string or a list of strings")
        pairs.append(MinedRow(row_text(row, fields.query), row_text(row, fields.pos), [n for n in negs if n.strip()]))
    return pairs


def candidate_texts(rows: Sequence[MinedRow], corpus: Sequence[str] = ()) -> list[str]:
    """The corpus texts, then every positive and negative of the rows, each text once."""
    seen: dict[str, None] = {}
    for text in corpus:
        seen.setdefault(text, None)
    for row in rows:
        seen.setdefault(row.pos, None)
        for neg in row.negs:
            seen.setdefault(neg, None)
    return list(seen)


def bm25_scorer(queries: Sequence[str], texts: Sequence[str]) -> Scorer:
    from ..index.lexical import build_bm25, tokenize

    retriever = build_bm25(texts)
    tokens = tokenize(queries)

    def score(rows: Sequence[int]) -> np.ndarray:
        # A query left with no token (stop words, punctuation) scores every text 0, as a query whose
        # terms no text holds does (bm25s cannot score it): its negatives are then any other texts.
        return np.stack([retriever.get_scores(tokens[r]) if tokens[r] else np.zeros(len(texts))
                         for r in rows]).astype(np.float32)

    return score


def dense_scorer(queries: Sequence[str], texts: Sequence[str], model: str, batch_size: int = 16,
                 device: str = "auto", dtype: str | None = None, show_progress: bool = False) -> Scorer:
    from ..encoding import load_embedder
    from ..index.exact import dense_scores
    from ..registry import Registry

    embedder = load_embedder(Registry().resolve(model), device=device, dtype=dtype)
    query_vectors = embedder.encode(list(queries), role="query", batch_size=batch_size, show_progress_bar=show_progress)
    text_vectors = embedder.encode(list(texts), role="document", batch_size=batch_size, show_progress_bar=show_progress)

    def score(rows: Sequence[int]) -> np.ndarray:
        return dense_scores(query_vectors[list(rows)], text_vectors)

    return score


def mine(rows: Sequence[MinedRow], texts: Sequence[str], scorer: Scorer, settings: MiningSettings,
         retriever: str = "") -> tuple[list[MinedRow], MiningReport]:
    """Each row with its mined negatives first, then (with `keep_negatives`) its own not already mined."""
    settings.check()
    position = {text: i for i, text in enumerate(texts)}
    missing = [i for i, row in enumerate(rows) if row.pos not in position]
    if missing:
        raise ArrError(f"row {missing[0] + 1}: its positive is not among the candidate texts")
    rng = np.random.default_rng(settings.seed)
    report = MiningReport(rows=len(rows), corpus=len(texts), retriever=retriever)
    mined_rows = []
    for start in range(0, len(rows), SCORE_CHUNK):
        chunk = range(start, min(start + SCORE_CHUNK, len(rows)))
        scores = scorer(chunk)
        for number, row_scores in zip(chunk, scores):
            row = rows[number]
            mined = _pick(row_scores, position[row.pos], settings, rng, report)
            negs = [texts[i] for i in mined]
            if len(negs) < settings.negatives:
                report.short_rows += 1
                if len(report.short_examples) < 5:
                    report.short_examples.append(number + 1)
            report.mined += len(negs)
            own = [n for n in row.negs if n not in negs] if settings.keep_negatives else []
            mined_rows.append(MinedRow(row.query, row.pos, negs + own))
    return mined_rows, report


def _pick(scores: np.ndarray, positive: int, settings: MiningSettings, rng: np.random.Generator,
          report: MiningReport) -> list[int]:
    scores = scores.copy()
    positive_score = scores[positive]
    scores[positive] = -np.inf
    if settings.max_score_ratio is not None and positive_score > 0:
        too_close = scores >= settings.max_score_ratio * positive_score
        report.filtered_by_ratio += int(too_close.sum())
        scores[too_close] = -np.inf
    depth = min(settings.depth, len(scores))
    top = np.argpartition(-scores, depth - 1)[:depth] if depth < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    if settings.sampling == "random" and len(top) > settings.negatives:
        top = top[np.sort(rng.choice(len(top), settings.negatives, replace=False))]
    return [int(i) for i in top[: settings.negatives]]


def write_triplets(path: Path, rows: Sequence[MinedRow], fields: FieldMap) -> None:
    def write(handle) -> None:
        for row in rows:
            handle.write(json.dumps({fields.query: row.query, fields.pos: row.pos, fields.neg: row.negs}, ensure_ascii=False) + "\n")

    write_atomic(path, write)


def mine_negatives(data: str, output: Path, retriever: str = "bm25", settings: MiningSettings = MiningSettings(),
                   corpus: Path | None = None, skip: int = 0, limit: int | None = None, fields: FieldMap = FieldMap(),
                   batch_size: int = 16, device: str = "auto", dtype: str | None = None,
                   show_progress: bool = False) -> MiningReport:
    """Mine negatives for rows skip+1 … skip+limit of `data` (a pairs or triplets file) against every
    text of `data` and of `corpus` (any corpus `arr index` reads); write the triplets to `output`.
    `retriever` is `bm25` or a registry model."""
    settings.check()
    if skip < 0 or (limit is not None and limit < 1):
        raise ArrError("--skip must be >= 0 and --limit >= 1")
    rows = read_pairs(data, fields)
    selected = rows[skip : None if limit is None else skip + limit]
    if not selected:
        raise ArrError(f"{data} has {len(rows)} rows: none left after skipping {skip}")
    texts = candidate_texts(rows, _corpus_texts(corpus) if corpus else ())
    queries = [row.query for row in selected]
    if retriever == "bm25":
        scorer = bm25_scorer(queries, texts)
    else:
        scorer = dense_scorer(queries, texts, retriever, batch_size, device, dtype, show_progress)
    mined, report = mine(selected, texts, scorer, settings, retriever)
    write_triplets(output, mined, fields)
    return report


def _corpus_texts(path: Path) -> list[str]:
    from ..corpus import CorpusSource

    source = CorpusSource(path)
    source.scan()
    return [document.full_text for document in source.documents()]
