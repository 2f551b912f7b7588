"""Encoding throughput: arr's AutoRegEmbed encoder vs sentence-transformers, same base model.

Both encode the same texts (the registry's document prompt applied, so the only difference is
arr's BOS and k compress tokens, i.e. arr processes more tokens), with the same base weights,
batch size, dtype, device and maximum length, in one process, one after the other.

    python benchmarks/encode_speed.py --corpus data/debian-desc/dev/corpus.jsonl \
        --docs 1000 --batch-size 16 --dtypes bfloat16 float32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def load_texts(corpus: Path, count: int) -> list[str]:
    from arretrieve.corpus import read_corpus

    return [doc.full_text for doc in read_corpus(corpus)[:count]]


def sentence_transformer(folder: str, dtype: torch.dtype, device: str, max_length: int):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    transformer = Transformer(folder, max_seq_length=max_length, model_kwargs={"dtype": dtype})
    if transformer.tokenizer.pad_token is None:
        transformer.tokenizer.pad_token = transformer.tokenizer.eos_token
    pooling = Pooling(transformer.get_embedding_dimension(), "mean")
    return SentenceTransformer(modules=[transformer, pooling], device=device)


def timed(encode, texts: list[str]) -> tuple[float, np.ndarray]:
    encode(texts[:8])  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    vectors = encode(texts)
    return time.perf_counter() - start, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()

    from arretrieve.modeling.backbone import local_folder
    from arretrieve.encoding import load_embedder
    from arretrieve.registry import Registry
    from arretrieve.registry.model_entry import split_template

    entry = Registry().get(args.model)
    texts = load_texts(args.corpus, args.docs)
    prefix, suffix = split_template(entry.template("document"))
    folder = local_folder(entry.base, entry.base_sha256)
    results, arr_vectors = [], {}
    for dtype_name in args.dtypes:
        arr = load_embedder(entry, device=args.device, dtype=dtype_name)
        items, lengths, _ = arr.prepare(texts, "document")
        arr_seconds, arr_vectors[dtype_name] = timed(
            lambda batch: arr.encode(batch, role="document", batch_size=args.batch_size), texts
        )
        st = sentence_transformer(folder, arr.dtype, str(arr.device), entry.max_length)
        st_lengths = [len(ids) for ids in st.tokenizer([prefix + t + suffix for t in texts])["input_ids"]]
        st_seconds, _ = timed(
            lambda batch: st.encode([prefix + t + suffix for t in batch], batch_size=args.batch_size), texts
        )
        results.append(
            {
                "dtype": dtype_name,
                "device": str(arr.device),
                "batch_size": args.batch_size,
                "docs": len(texts),
                "arr_docs_per_s": round(len(texts) / arr_seconds, 2),
                "st_docs_per_s": round(len(texts) / st_seconds, 2),
                "ratio_arr_over_st": round(st_seconds / arr_seconds, 2),
                "arr_tokens": int(sum(lengths)),
                "st_tokens": int(sum(min(n, entry.max_length) for n in st_lengths)),
            }
        )
        print(json.dumps(results[-1]), flush=True)
        del arr, st
    if {"bfloat16", "float32"} <= set(arr_vectors):
        cosine = (arr_vectors["bfloat16"] * arr_vectors["float32"]).sum(1)
        print(json.dumps({"bf16_vs_fp32_cosine_min": round(float(cosine.min()), 5), "mean": round(float(cosine.mean()), 5)}))
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
