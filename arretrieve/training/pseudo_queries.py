"""Pseudo-queries for label-free adaptation (`arr adapt`): the model's own frozen decoder (the
released base) writes one line per document, and the lines become the queries of training pairs.
Only the corpus's documents are read: no query, no qrels. Two sources:

- `text` (the default): the decoder, prompted as the chat model it was released as, answers
  `instruction` after the document's first `max_text_tokens` tokens (`write_from_text`);
- `states`: it writes from the document's compressed states alone (`read_back`, what
  `arr search --explain` shows): what the states carry, errors included.

A line is kept when it is not empty, has at least `min_words` words, is written for one document
only (unless `distinct` is off), and retrieves its own document in the model's top `keep_top` among the whole corpus (exact
dense search). A seeded share of the documents is held back: their kept lines, searched over the
corpus, are the label-free evaluation the training step keeps its best checkpoint by.

Generation, the slow part (one short greedy decode per document), is resumable: each finished batch
is appended to `<output>.lines.jsonl`, and a re-run continues after the last whole batch, in the
same batches, so an interrupted run writes the same folder as one that was not.

The output folder holds `train.jsonl` ({query, pos} rows of the documents not held back),
`held-out/` (a BEIR folder with a `test` split: the held-back documents' lines as queries over the
held-back documents and up to `eval_documents` others) and `report.json` (counts, the corpus's
fingerprint, the model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import ArrError
from ..home import write_folder_atomic

log = logging.getLogger(__name__)


def _held_back(ids: list[str], share: float, seed: int) -> set[str]:
    """A seeded share of the documents, chosen by a hash of (seed, id): the same whatever the order."""
    count = round(len(ids) * share)
    ranked = sorted(ids, key=lambda i: hashlib.sha1(f"{seed}\0{i}".encode()).hexdigest())
    return set(ranked[:count])


def _normalised(line: str) -> str:
    return " ".join(line.casefold().split())


class _Lines:
    """The generated lines so far, per document id, appended batch by batch to a side file whose
    first line names the corpus and model (another corpus or model starts it over)."""

    def __init__(self, path: Path, header: dict):
        self.path, self.lines = path, {}
        if path.is_file():
            with open(path, encoding="utf-8") as handle:
                rows = handle.read().split("\n")
            try:
                same = json.loads(rows[0]) == header
            except ValueError:
                same = False
            if same:
                for row in rows[1:]:
                    try:
                        batch = json.loads(row)
                    except ValueError:
                        break  # the batch being written when the run stopped: generated again
                    self.lines.update(batch)
        if not self.lines:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(header) + "\n", encoding="utf-8")

    def add(self, batch: dict[str, str]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(batch, ensure_ascii=False) + "\n")
        self.lines.update(batch)


SOURCES = ("text", "states")


def pseudo_queries(input: str, output: Path, model: str, source: str = "text",
                   instruction: str = "Write a short title for this documentation.", max_text_tokens: int = 256,
                   keep_top: int = 10, held_out: float = 0.1, eval_documents: int = 1000, min_words: int = 2,
                   distinct: bool = True, max_new_tokens: int = 24, batch_size: int = 16,
                   seed: int = 0, device: str = "auto", registry=None) -> dict:
    """Write the pseudo-query folder for the corpus at `input` (any format `arr index` reads) with
    the registry model `model`; returns the counts (also in `report.json`)."""
    from ..corpus import CorpusSource
    from ..registry import Registry

    if source not in SOURCES:
        raise ArrError(f"pseudo-queries: source must be one of {', '.join(SOURCES)}, not {source!r}")
    if (keep_top < 1 or not 0 <= held_out < 1 or min_words < 0 or max_new_tokens < 1 or batch_size < 1
            or max_text_tokens < 1):
        raise ArrError("pseudo-queries: keep_top, max_new_tokens, max_text_tokens and batch_size must be >= 1, "
                       "held_out in [0, 1)")
    entry = (registry or Registry()).resolve(model)
    if entry.kind != "autoregembed":
        raise ArrError(f"pseudo-queries are written by an AutoRegEmbed model's decoder; {entry.name!r} is a "
                       f"{entry.kind} model")
    corpus = CorpusSource(Path(input))  # refuses repeated ids, naming file and line
    documents = list(corpus.documents())
    ids, texts = [d.id for d in documents], [d.full_text for d in documents]
    fingerprint = corpus.fingerprint()

    import torch

    from ..encoding.autoregembed_embedder import AutoRegEmbedEmbedder
    from ..modeling.loading import load_autoregembed
    from ..runtime import progress_bar, resolve_device, resolve_dtype

    torch_device = resolve_device(device)
    dtype = resolve_dtype(entry.dtype, torch_device)
    reader = load_autoregembed(entry, dtype, torch_device, frozen_decoder=True)
    template = entry.template("document")
    if source == "text":
        reader.require_chat_template()
    header = {"corpus_sha256": fingerprint, "model": entry.fingerprint, "source": source,
              "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    if source == "text":
        header |= {"instruction": instruction, "max_text_tokens": max_text_tokens}
    lines = _Lines(Path(f"{output}.lines.jsonl"), header)
    # Longest first, in fixed batches: little padding, and the same batches when resumed.
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    todo = [b for b in batches if not all(ids[i] in lines.lines for i in b)]
    started = time.perf_counter()
    with progress_bar("documents") as progress:
        task = progress.add_task("pseudo-queries", total=len(texts), completed=len(texts) - sum(map(len, todo)))
        for batch in todo:
            chunk = [texts[i] for i in batch]
            if source == "text":
                written = reader.write_from_text(chunk, instruction, max_new_tokens, max_text_tokens)
            else:
                written = reader.read_back(chunk, template, max_new_tokens=max_new_tokens)
            lines.add({ids[i]: line for i, line in zip(batch, written)})
            progress.update(task, advance=len(batch))
    generation_s = time.perf_counter() - started

    written = [lines.lines[i] for i in ids]
    repeats = Counter(_normalised(line) for line in written)
    long_enough = [len(line.split()) >= max(min_words, 1) for line in written]
    repeated = [distinct and repeats[_normalised(line)] > 1 for line in written]
    candidates = [i for i in range(len(written)) if long_enough[i] and not repeated[i]]
    embedder = AutoRegEmbedEmbedder(entry, reader, torch_device, dtype)
    with torch.no_grad():
        doc_vectors = embedder.encode(texts, role="document", show_progress_bar=True)
        query_vectors = embedder.encode([written[i] for i in candidates], role="query", show_progress_bar=True)
    ranks = np.array([int((doc_vectors @ q > doc_vectors[i] @ q).sum()) for q, i in zip(query_vectors, candidates)],
                     dtype=int)
    kept = [i for i, rank in zip(candidates, ranks) if rank < keep_top]
    held = _held_back(ids, held_out, seed)
    train_rows = [{"query": written[i], "pos": texts[i]} for i in kept if ids[i] not in held]
    eval_queries = [i for i in kept if ids[i] in held]
    if not train_rows:
        raise ArrError(f"pseudo-queries: none of the {len(texts)} documents' lines passed the filter; the model "
                       f"{entry.name!r} cannot adapt to {input}")
    others = [i for i in range(len(ids)) if ids[i] not in held]
    others = sorted(others, key=lambda i: hashlib.sha1(f"{seed}\0{ids[i]}".encode()).hexdigest())[:eval_documents]
    eval_corpus = sorted([i for i in range(len(ids)) if ids[i] in held] + others)
    counts = {
        "documents": len(texts), "corpus_sha256": fingerprint, "model": entry.name, "model_fingerprint": entry.fingerprint,
        "source": source,
        "empty_or_short": long_enough.count(False),
        "repeated": sum(1 for i in range(len(written)) if long_enough[i] and repeated[i]),
        "own_document_at_1": int((ranks == 0).sum()), f"own_document_in_top_{keep_top}": len(kept),
        "train_rows": len(train_rows), "held_out_documents": len(held), "held_out_queries": len(eval_queries),
        "held_out_corpus": len(eval_corpus), "generation_s": round(generation_s, 1),
    }

    def write(folder: Path) -> None:
        with open(folder / "train.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in train_rows)
        held_folder = folder / "held-out"
        (held_folder / "qrels").mkdir(parents=True)
        with open(held_folder / "corpus.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps({"_id": ids[i], "title": "", "text": texts[i]}, ensure_ascii=False) + "\n"
                           for i in eval_corpus)
        with open(held_folder / "queries.jsonl", "w", encoding="utf-8") as out:
            out.writelines(json.dumps({"_id": f"pq-{ids[i]}", "text": written[i]}, ensure_ascii=False) + "\n"
                           for i in eval_queries)
        with open(held_folder / "qrels" / "test.tsv", "w", encoding="utf-8") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            out.writelines(f"pq-{ids[i]}\t{ids[i]}\t1\n" for i in eval_queries)

    write_folder_atomic(output, write, "report.json", counts, existing="replace")
    Path(f"{output}.lines.jsonl").unlink()
    log.info("pseudo-queries: %s", counts)
    return counts

