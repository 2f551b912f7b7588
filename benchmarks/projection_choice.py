"""Why hnsw-pca projects on uncentred principal axes: arr's index next to FAISS's own PCA pipeline.

The obvious way to build an HNSW graph over reduced vectors is FAISS's factory string
`PCA<d>,L2norm,HNSW32,RFlat`, whose PCA subtracts the mean before projecting. Both indexes below
share everything else (dimension, links, ef_construction, exact re-ranking of the candidates from
the full vectors), so the recall@10 against exact search isolates the projection.

    python benchmarks/projection_choice.py --corpus data/debian-desc/full \
        --queries data/debian-desc/dev/queries.jsonl --model autoregembed-smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SETTINGS = [{"ef_search": e, "rerank_factor": f} for e, f in ((40, 2), (40, 3), (60, 3), (80, 4))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from arretrieve.corpus import CorpusSource
    from arretrieve.encoding import load_embedder
    from arretrieve.encoding import EncodingOptions
    from arretrieve.encoding import encode_corpus
    from arretrieve.index.faiss_index import IndexSpec, apply_search_params, create_index, faiss_module, plan_index, training_sample
    from arretrieve.corpus.queries import read_queries
    from arretrieve.registry import Registry

    faiss = faiss_module()
    entry = Registry().resolve(args.model)
    job = encode_corpus(CorpusSource(args.corpus), entry, EncodingOptions(show_progress=True))
    vectors = np.concatenate(list(job.iter_vectors()))
    embedder = load_embedder(entry, dtype=job.spec.dtype)
    query_vectors = embedder.encode(list(read_queries(args.queries).values()), role="query", batch_size=64)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(query_vectors, 10)

    params = plan_index(IndexSpec("hnsw-pca", seed=args.seed), len(vectors), vectors.shape[1])
    sample = training_sample([vectors], len(vectors), params.train_size, args.seed)
    arr_index = create_index(params, vectors.shape[1], sample)
    faiss_index = faiss.index_factory(vectors.shape[1], f"PCA{params.reduced_dim},L2norm,HNSW{params.hnsw_m},RFlat",
                                      faiss.METRIC_INNER_PRODUCT)
    faiss.downcast_index(faiss.downcast_index(faiss_index.base_index).index).hnsw.efConstruction = params.ef_construction
    faiss_index.train(sample)
    print(json.dumps({"vectors": len(vectors), "queries": len(query_vectors), "reduced_dim": params.reduced_dim,
                      "hnsw_m": params.hnsw_m, "ef_construction": params.ef_construction}), flush=True)
    for name, index in (("arr hnsw-pca (uncentred axes)", arr_index), ("faiss PCA,L2norm,HNSW,RFlat (centred)", faiss_index)):
        started = time.perf_counter()
        index.add(vectors)
        build_seconds = time.perf_counter() - started
        for setting in SETTINGS:
            apply_search_params(index, setting)
            _, found = index.search(query_vectors, 10)
            recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)]))
            print(json.dumps({"index": name, "build_s": round(build_seconds, 2), **setting, "recall@10": round(recall, 4)}), flush=True)


if __name__ == "__main__":
    main()
