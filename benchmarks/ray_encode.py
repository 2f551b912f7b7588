"""Corpus encoding on Ray against the single-process job, in one run: what Ray costs.

    python benchmarks/ray_encode.py --corpus data/debian-desc/dev --docs 2000 --workers 1

Both encode the first --docs documents of the corpus with the same model, dtype, batch and shard
size, each into an empty job folder (the first one's is removed before the second runs): first the
single-process job, then `--ray local` (a cluster started on this machine for the run; its start is
timed apart from the encoding) with --workers actors. Prints both walls, documents/s, the ratio,
and whether the shards are byte-identical. With one worker on the same CPUs the ratio is Ray's
overhead (actor start, model load in the actor, texts and vectors through the object store); more
workers only pay where there are more CPUs or GPUs than one process uses.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR folder")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--model", default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    import ray

    from arretrieve.corpus import CorpusSource
    from arretrieve.encoding import EncodingOptions, encode_corpus
    from arretrieve.registry import Registry

    entry = Registry().resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "corpus"
        folder.mkdir()
        with open(args.corpus / "corpus.jsonl", encoding="utf-8") as source, open(folder / "corpus.jsonl", "w") as out:
            for _, line in zip(range(args.docs), source):
                out.write(line)
        corpus = CorpusSource(folder)
        options = EncodingOptions(shard_size=args.shard_size, batch_size=args.batch_size)
        walls = {}
        started = time.perf_counter()
        job = encode_corpus(corpus, entry, options)
        walls["local"] = time.perf_counter() - started
        local_shards = [job.shard_path(n).read_bytes() for n in range(job.shards)]
        shutil.rmtree(job.work_dir)
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        walls["ray_start"] = time.perf_counter() - started
        started = time.perf_counter()
        job = encode_corpus(corpus, entry, replace(options, ray="auto", workers=args.workers))
        walls["ray"] = time.perf_counter() - started
        ray.shutdown()
        identical = local_shards == [job.shard_path(n).read_bytes() for n in range(job.shards)]
        shutil.rmtree(job.work_dir)
    print(json.dumps({
        "model": entry.name, "docs": args.docs, "workers": args.workers, "shard_size": args.shard_size,
        "local_s": round(walls["local"], 1), "ray_s": round(walls["ray"], 1), "ray_start_s": round(walls["ray_start"], 1),
        "local_docs_per_s": round(args.docs / walls["local"], 2), "ray_docs_per_s": round(args.docs / walls["ray"], 2),
        "ray_over_local": round(walls["ray"] / walls["local"], 3), "identical_shards": identical,
        "machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
    }, indent=2))


if __name__ == "__main__":
    main()
