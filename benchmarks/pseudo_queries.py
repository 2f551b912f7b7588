"""Pseudo-queries from the model's own decoder (issue 42): how many retrieve their own document?

    python benchmarks/pseudo_queries.py $ARR_HOME/collections/perlpod/dev [--model NAME] [--limit 300]

For each document of a BEIR folder's corpus (the first --limit), the model's frozen decoder writes a
line from the document's compressed states (`AutoRegEmbedModel.read_back`, greedy, what
`arr search --explain` shows). Reported: how many lines are empty or repeat another's, and how
many retrieve their own document at rank 1 and in the top 10 among the corpus with the same model
(exact dense search): the yield of the filter that keeps a pseudo-query only when it finds its
document. Reads no query and no qrels of the folder. Prints a few examples beside their documents.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import arretrieve
    from arretrieve.corpus import CorpusSource
    from arretrieve.modeling.loading import load_autoregembed
    from arretrieve.registry import Registry
    from arretrieve.runtime import resolve_device, resolve_dtype

    entry = Registry().resolve(args.model)
    documents = list(CorpusSource(args.folder).documents())[: args.limit]
    texts = [d.full_text for d in documents]
    device = resolve_device("auto")
    reader = load_autoregembed(entry, resolve_dtype(entry.dtype, device), device, frozen_decoder=True)
    start = time.perf_counter()
    lines = []
    for i in range(0, len(texts), args.batch):
        lines += reader.read_back(texts[i:i + args.batch], entry.template("document"))
    generation = time.perf_counter() - start
    embedder = arretrieve.load_embedder(entry)
    doc_vectors = embedder.encode(texts, role="document")
    kept = [i for i, line in enumerate(lines) if line.strip()]
    query_vectors = embedder.encode([lines[i] for i in kept], role="query")
    ranks = np.array([(doc_vectors @ q > doc_vectors[i] @ q).sum() for q, i in zip(query_vectors, kept)])
    report = {
        "folder": str(args.folder), "model": entry.name, "documents": len(texts), "empty": len(texts) - len(kept),
        "distinct": len(set(lines)), "own_document_at_1": float(np.mean(ranks == 0)) if len(kept) else 0.0,
        "own_document_in_top_10": float(np.mean(ranks < 10)) if len(kept) else 0.0,
        "generation_s_per_document": generation / len(texts), "device": str(device),
    }
    print(json.dumps(report, indent=2))
    for i in range(min(5, len(texts))):
        print(f"- {texts[i][:90]!r} -> {lines[i]!r}")


if __name__ == "__main__":
    main()
