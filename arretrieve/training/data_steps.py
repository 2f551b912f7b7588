"""The data steps a recipe runs between its training stages, each from input files to one output
file, written atomically (a step interrupted leaves no output, and runs again):

    reconstruction-rows  stage-1 rows, every N-th followed by a row rebuilding its context (or its
                         first words; the stage-1 rows themselves optional)
    paper-triplets       retrieval triplets turned the paper's way (the long text encodes, the decoder
                         scores synopses), the synopses taken from stage-1 rows
    slice                rows skip+1 … skip+limit of a file
    mine-negatives       hard negatives mined with BM25 or a registry model (training/mining.py)
    beir-sample          a small BEIR folder: the first queries of a split, their documents, distractors
    pseudo-queries       label-free training pairs and a held-out evaluation from a corpus alone, the
                         queries written by a model's decoder (training/pseudo_queries.py)

`DATA_STEPS` maps each name to its function and to the settings it takes beyond `input` and `output`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ArrError
from ..home import write_atomic, write_folder_atomic
from .data import checked_rows, row_text

RECONSTRUCTION_INSTRUCTION = "Repeat the text above."


def _write_jsonl(path: Path, rows) -> int:
    count = 0

    def write(handle) -> None:
        nonlocal count
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1

    write_atomic(path, write)
    return count


def reconstruction_rows(input: str, output: Path, every: int = 2, words: int | None = None,
                        synopses: bool = True) -> dict:
    """Each stage-1 row, and after every `every`-th one a row asking the decoder to rebuild its whole
    context (ICAE's autoencoding task): a synopsis alone carries little document-specific signal.
    `words` makes the rebuilt texts the contexts' first N words (short texts, which a few states can
    hold whole); `synopses = false` leaves the stage-1 rows out, so only rebuilding rows remain."""
    if every < 1:
        raise ArrError("every must be at least 1")
    if words is not None and words < 1:
        raise ArrError("words must be at least 1")
    rows, _ = checked_rows(input, None)
    counts = {"synopsis_rows": 0, "reconstruction_rows": 0}

    def rebuilt():
        for index, row in enumerate(rows):
            if synopses:
                yield row.fields
                counts["synopsis_rows"] += 1
            if index % every == 0:
                context = row_text(row, "context")
                if words is not None:
                    context = " ".join(context.split()[:words])
                yield {"context": context, "instruction": RECONSTRUCTION_INSTRUCTION, "output": context}
                counts["reconstruction_rows"] += 1

    _write_jsonl(output, rebuilt())
    return counts


def paper_triplets(input: str, output: Path, compression: str) -> dict:
    """`{query: long text, pos: its synopsis, neg: [synopses of the row's negative documents]}` from
    retrieval triplets (`input`) and stage-1 rows giving each document's synopsis (`compression`); a
    row is dropped (and counted) when a negative has no synopsis or shares the positive's."""
    synopsis = {row_text(r, "context"): row_text(r, "output") for r in checked_rows(compression, None)[0]}
    rows, _ = checked_rows(input, None)
    counts = {"written": 0, "dropped_without_distinct_negative_synopsis": 0}

    def turned():
        for row in rows:
            negatives = [synopsis.get(doc) for doc in row.fields["neg"]]
            if any(n is None or n == row.fields["query"] for n in negatives):
                counts["dropped_without_distinct_negative_synopsis"] += 1
                continue
            counts["written"] += 1
            yield {"query": row_text(row, "pos"), "pos": row_text(row, "query"), "neg": negatives}

    _write_jsonl(output, turned())
    return counts


def slice_rows(input: str, output: Path, skip: int = 0, limit: int | None = None) -> dict:
    """Rows skip+1 … skip+limit (all after `skip` without a limit)."""
    if skip < 0 or (limit is not None and limit < 1):
        raise ArrError("skip must be >= 0 and limit >= 1")
    rows, _ = checked_rows(input, None if limit is None else skip + limit)
    written = _write_jsonl(output, (row.fields for row in rows[skip:]))
    if not written:
        raise ArrError(f"{input} has no rows after the first {skip}")
    return {"rows": written}


def mine_negatives_step(input: str, output: Path, retriever: str = "bm25", skip: int = 0, limit: int | None = None,
                        corpus: str | None = None, **settings: Any) -> dict:
    """`arr mine-negatives` as a step; `corpus` adds candidate texts, `settings` are `MiningSettings` fields."""
    from .mining import MiningSettings, mine_negatives

    try:
        mining = MiningSettings(**settings)
    except TypeError as exc:
        raise ArrError(f"mine-negatives: {exc}") from None
    report = mine_negatives(input, output, retriever, mining, corpus=Path(corpus) if corpus else None, skip=skip, limit=limit)
    return {"rows": report.rows, "mined": report.mined, "short_rows": report.short_rows}


def beir_sample(input: str, output: Path, split: str = "dev", queries: int = 120, documents: int = 300) -> dict:
    """The first `queries` queries of a BEIR folder's split (file order), all their relevant documents,
    then the corpus's first other documents up to `documents`, as a BEIR folder with a `test` split
    (how examples/debian-sample was made from Debian dev)."""
    source = Path(input)
    try:
        chosen_queries = [json.loads(line) for line in open(source / "queries.jsonl", encoding="utf-8")][:queries]
        wanted = {q["_id"] for q in chosen_queries}
        with open(source / "qrels" / f"{split}.tsv", encoding="utf-8") as handle:
            qrels = [r for r in csv.DictReader(handle, delimiter="\t") if r["query-id"] in wanted]
        corpus = [json.loads(line) for line in open(source / "corpus.jsonl", encoding="utf-8")]
    except (OSError, ValueError, KeyError) as exc:
        raise ArrError(f"{source} is not a BEIR folder with a {split} split ({exc})") from None
    relevant = {r["corpus-id"] for r in qrels}
    chosen = [d for d in corpus if d["_id"] in relevant]
    chosen += [d for d in corpus if d["_id"] not in relevant][: documents - len(chosen)]
    chosen.sort(key=lambda d: d["_id"])

    def write(folder: Path) -> None:
        (folder / "qrels").mkdir()
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in chosen)
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in chosen_queries)
        with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            out.writelines(f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in qrels)

    counts = {"documents": len(chosen), "queries": len(chosen_queries), "qrels": len(qrels)}
    write_folder_atomic(output, write, ".sample.json", counts, existing="replace")
    return counts


def pseudo_queries_step(input: str, output: Path, **settings: Any) -> dict:
    from .pseudo_queries import pseudo_queries

    return pseudo_queries(input, output, **settings)


@dataclass(frozen=True)
class DataStep:
    run: Callable[..., dict]
    inputs: tuple[str, ...]  # the settings that name input files (each must exist or be an earlier step's output)
    uses_registry: bool = False  # it loads a model: given the run's registry (its intermediates included)


DATA_STEPS: dict[str, DataStep] = {
    "reconstruction-rows": DataStep(reconstruction_rows, ("input",)),
    "paper-triplets": DataStep(paper_triplets, ("input", "compression")),
    "slice": DataStep(slice_rows, ("input",)),
    "mine-negatives": DataStep(mine_negatives_step, ("input", "corpus")),
    "beir-sample": DataStep(beir_sample, ("input",)),
    "pseudo-queries": DataStep(pseudo_queries_step, ("input",), uses_registry=True),
}
