"""Reranking by the decoder (issue 42 item 3), measured before it is built: does log p(query | a
hit's compressed states) reorder the top of the dense list for the better?

    python benchmarks/likelihood_rerank.py $ARR_HOME/collections/perlpod/dev --split dev --depth 20

Dense exact search with the model gives each query's top --depth; for each hit, the frozen decoder
scores the query's tokens (and EOS) after the hit's compressed states (the document prompt, as the
index encodes it): the mean log-likelihood per token. Both scores are min-max normalised within
each query's list and fused, (1 - w) · dense + w · likelihood, for w from 0 (dense alone) to 1
(likelihood alone); nDCG@10 for each w (choose w on dev only). Also the wall of the rescoring per
query (states of the hits recomputed from their text, as a reranker without stored states would).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _minmax(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--model", default=None)
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args()
    import torch

    import arretrieve
    from arretrieve.corpus import CorpusSource
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.metrics import compute_metrics
    from arretrieve.modeling.loading import load_autoregembed
    from arretrieve.registry import Registry
    from arretrieve.runtime import resolve_device, resolve_dtype

    entry = Registry().resolve(args.model)
    dataset = load_dataset(str(args.folder), args.split)
    documents = list(CorpusSource(args.folder).documents())
    texts, ids = [d.full_text for d in documents], [d.id for d in documents]
    embedder = arretrieve.load_embedder(entry)
    doc_vectors = embedder.encode(texts, role="document")
    query_ids = sorted(dataset.queries)
    query_vectors = embedder.encode([dataset.queries[q] for q in query_ids], role="query")
    device = resolve_device("auto")
    reader = load_autoregembed(entry, resolve_dtype(entry.dtype, device), device, frozen_decoder=True)
    template = entry.template("document")
    runs = {w: {} for w in np.round(np.linspace(0, 1, 11), 1)}
    walls = []
    for q, vector in zip(query_ids, query_vectors):
        dense = doc_vectors @ vector
        top = np.argsort(-dense, kind="stable")[: args.depth]
        start = time.perf_counter()
        with torch.no_grad():
            encoded = reader.encode_texts([texts[i] for i in top], template)
            padded, lengths = reader.pad(encoded.input_ids)
            states = reader.compress(padded, lengths)
            target = reader.encode_targets([dataset.queries[q]]).input_ids[0]
            targets = torch.tensor([target] * len(top), device=device)
            target_lengths = torch.full((len(top),), len(target), device=device)
            likelihood = (reader.score_padded(states, targets, target_lengths) / len(target)).float().cpu().numpy()
        walls.append(time.perf_counter() - start)
        d, ll = _minmax(dense[top]), _minmax(likelihood)
        for w in runs:
            fused = (1 - w) * d + w * ll
            runs[w][q] = {ids[i]: float(s) for i, s in zip(top, fused)}
    table = {f"{w:.1f}": compute_metrics(dataset.qrels, run)["NDCG@10"] for w, run in runs.items()}
    print(json.dumps({"folder": str(args.folder), "split": args.split, "model": entry.name, "depth": args.depth,
                      "queries": len(query_ids), "ndcg@10_by_likelihood_weight": table,
                      "rescoring_ms_per_query_p50": float(np.percentile(walls, 50) * 1e3), "device": str(device)}, indent=2))


if __name__ == "__main__":
    main()
