"""Encoding memory as the corpus grows: arr's sharded pipeline vs encoding everything in memory.

Each (size, method) runs in a fresh process; its peak resident memory (ru_maxrss) is reported.
The model is a tiny randomly initialised 2-layer Llama built here, so the numbers measure the
pipeline (texts, token ids, vectors, index), not the model's own weights, and a 60k-document run
takes minutes on a CPU. Documents are the Debian descriptions (`full/corpus.jsonl.gz`, repeated
when more are asked for than it holds).

    python benchmarks/index_scale.py --corpus data/debian-desc/full/corpus.jsonl.gz --sizes 10000 60000
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(source: Path, size: int, target: Path) -> None:
    opener = gzip.open if source.name.endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    with open(target, "w", encoding="utf-8") as out:
        for i in range(size):
            row = rows[i % len(rows)]
            out.write(json.dumps({"_id": f"{row['_id']}-{i // len(rows)}", "title": "", "text": row["text"]}) + "\n")


def run_child(method: str, corpus: Path, model_dir: Path, home: Path) -> None:
    """Inside the measured process: encode `corpus` with the tiny model by one method."""
    os.environ["ARR_HOME"] = str(home)
    from arretrieve.encoding import EncodingOptions
    from arretrieve.index import IndexStore, build_index
    from arretrieve.registry import ModelEntry, Registry
    from arretrieve.registry.builtin_models import REFERENCE_PROMPTS

    registry = Registry()
    entry = ModelEntry(name="tiny", kind="autoregembed", base=str(model_dir), num_compress_tokens=5,
                       prompts=REFERENCE_PROMPTS, add_bos=True, pooling="compress-mean", dim=64,
                       dtype="float32", max_length=512)
    registry.add(entry, overwrite=True)
    started = time.perf_counter()
    if method == "arr":
        build_index(corpus, name="scale", model="tiny", registry=registry, store=IndexStore(home / "indexes"),
                    encoding=EncodingOptions(batch_size=64, shard_size=4096), overwrite=True)
    else:  # the peer pattern: every text in memory, one encode call, then the index
        import faiss

        from arretrieve.encoding import load_embedder

        texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
        vectors = load_embedder(entry, device="cpu").encode(texts, role="document", batch_size=64)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "peak_rss_mib": round(peak_mib, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, corpus, model_dir, home = args.child
        run_child(method, Path(corpus), Path(model_dir), Path(home))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from conftest import build_tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = build_tiny_llama(tmp / "model")
        for size in args.sizes:
            corpus = tmp / f"corpus-{size}.jsonl"
            write_corpus(args.corpus, size, corpus)
            for method in ("arr", "in-memory"):
                child = subprocess.run(
                    [sys.executable, __file__, "--corpus", str(args.corpus), "--child", method, str(corpus),
                     str(model_dir), str(tmp / f"home-{size}-{method}")],
                    capture_output=True, text=True,
                )
                if child.returncode != 0:
                    raise SystemExit(child.stderr)
                measured = json.loads(child.stdout.strip().splitlines()[-1])
                print(json.dumps({"docs": size, "method": method, **measured}), flush=True)


if __name__ == "__main__":
    main()
