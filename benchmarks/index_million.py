"""A million vectors of the default model: build, memory, disk, recall and latency per index type.

    python benchmarks/index_million.py --corpus data/debian-desc/dev --count 1000000 --work /tmp/million

Vectors: the default model's real vectors of the 5,124 Debian dev documents (encoded by
`encode_corpus`, or taken from its cache when `arr index` encoded them before), and, to reach --count, points
on the segments between a real vector and one of its 10 nearest real neighbours (uniform
position, re-normalised). So the million keeps the real vectors' anisotropy (a shared direction
and a few dominant dimensions) and their neighbourhoods, filled in more densely, without the
tight clusters of copies plus noise that would make every quantizer look worse than it is on real
text. Queries: the first --queries-count queries of the same dev folder encoded by the default model (its
query prompt). Ground truth: exact inner-product search over the million.

Each build runs `arr index`'s own path (build_index) in a fresh process, from an encoding cache
filled with these vectors (so nothing is encoded), over a corpus of one short line per vector
(BM25 off): flat, hnsw, ivf-flat and ivf-pq in memory, and ivf-flat and ivf-pq with a
--memory-budget below their lists (--on-disk-budget, 40 MB by default: half the million's 80 MB of
IVF-PQ codes), which add the vectors in blocks and merge their inverted lists on disk. For each: build wall, peak
anonymous memory of the build (sampled; its peak RSS beside it, which also counts mapped file pages), size on disk, recall@10 against exact search with the
index's default search settings, and single-query latency p50/p99 (one query per call, the
searcher's candidate path including IVF-PQ's exact re-ranking).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TYPES = ("flat", "hnsw", "ivf-flat", "ivf-flat-on-disk", "ivf-pq", "ivf-pq-on-disk")
SHARD = 16384


def synthetic(real: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sims = real @ real.T
    np.fill_diagonal(sims, -np.inf)
    neighbours = np.argpartition(-sims, 10, axis=1)[:, :10]
    extra = count - len(real)
    base = rng.integers(0, len(real), extra)
    other = neighbours[base, rng.integers(0, 10, extra)]
    t = rng.random((extra, 1), dtype=np.float32)
    made = real[base] + t * (real[other] - real[base])
    made /= np.linalg.norm(made, axis=1, keepdims=True)
    return np.concatenate([real, made.astype(np.float32)])


def prepare(args) -> None:
    """The corpus file, the filled encoding cache, the query vectors and the exact top 10."""
    import arretrieve
    from arretrieve.corpus import CorpusSource
    from arretrieve.encoding.corpus_job import EncodeJob, EncodeJobSpec
    from arretrieve.registry import Registry

    from arretrieve.encoding import EncodingOptions, encode_corpus

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    entry = Registry().resolve(args.model)
    real = np.concatenate(list(encode_corpus(CorpusSource(args.corpus), entry, EncodingOptions(dtype="bfloat16")).iter_vectors()))
    vectors = synthetic(real.astype(np.float32), args.count)
    corpus = work / "corpus.jsonl"
    with open(corpus, "w") as out:
        for i in range(args.count):
            out.write(json.dumps({"_id": f"v{i}", "text": f"vector {i}"}) + "\n")
    source = CorpusSource(corpus)
    job = EncodeJob(EncodeJobSpec(entry.fingerprint, source.fingerprint(), "bfloat16", SHARD, source.scan().chunks),
                    root=work / "home" / "cache" / "encodings")
    job.prepare()
    for number in range(job.shards):
        job.save_shard(number, vectors[number * SHARD:(number + 1) * SHARD])
    queries = [json.loads(line)["text"] for line in open(args.corpus / "queries.jsonl")][: args.queries_count]
    query_vectors = arretrieve.encode(queries, model=entry.name, role="query")
    exact = []
    for start in range(0, len(query_vectors), 50):  # top 10 of 50 queries at a time: no 500 x 1M sort
        scores = query_vectors[start:start + 50] @ vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        exact.append(np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1))
    exact = np.concatenate(exact)
    np.save(work / "queries.npy", query_vectors)
    np.save(work / "exact.npy", exact)
    (work / "construction.json").write_text(json.dumps({"real": len(real), "count": args.count, "model": entry.name}))


def _status_gb(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    return 0.0


class AnonymousPeak:
    """Peak anonymous resident memory, sampled every 20 ms: what the build needs in RAM. (VmHWM also
    counts the pages of memory-mapped files it reads and writes, which the kernel can drop.)"""

    def __init__(self):
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _status_gb("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status_gb("RssAnon"))


def build_child(work: Path, kind: str, model: str, budget: int) -> None:
    """In a fresh process: build one index through build_index, print wall and peak memory."""
    from arretrieve.encoding import EncodingOptions
    from arretrieve.index import IndexSpec, IndexStore, build_index

    index_type = kind.removesuffix("-on-disk")
    anonymous = AnonymousPeak()
    start = time.perf_counter()
    manifest = build_index(work / "corpus.jsonl", name=kind, model=model, spec=IndexSpec(index_type, budget if kind.endswith("on-disk") else None),
                           encoding=EncodingOptions(dtype="bfloat16", shard_size=SHARD),
                           store=IndexStore(work / "indexes"), overwrite=True, bm25=False)
    wall = time.perf_counter() - start
    print(json.dumps({"build_s": wall, "peak_rss_gb": _status_gb("VmHWM"), "peak_anon_gb": anonymous.stop(),
                      "reason": manifest.index_params["reason"], "on_disk": manifest.index_params["on_disk"]}))


def measure(work: Path, kind: str) -> dict:
    from arretrieve.index import Searcher

    folder = work / "indexes" / kind
    searcher = Searcher(folder)  # the model is loaded only if a text query comes: none here
    queries, exact = np.load(work / "queries.npy"), np.load(work / "exact.npy")
    walls, found = [], []
    for query in queries:
        start = time.perf_counter()
        _, rows = searcher._candidates(query[None], 10)
        walls.append(time.perf_counter() - start)
        found.append(rows[0])
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and not p.name.startswith(("docs", "offsets")))
    return {"recall_at_10": float(recall), "p50_ms": float(np.percentile(walls, 50) * 1e3),
            "p99_ms": float(np.percentile(walls, 99) * 1e3), "index_bytes_on_disk": size,
            "search": searcher.params, "found": [list(map(int, f)) for f in found[:50]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="BEIR folder: its documents' vectors and its queries")
    parser.add_argument("--queries-count", type=int, default=500)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--model", default=None, help="registry model the vectors are from (default: the default)")
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    parser.add_argument("--on-disk-budget", type=float, default=40e6,
                        help="--memory-budget of the on-disk build, bytes (below the IVF-PQ codes)")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.environ["ARR_HOME"] = str(args.work / "home")
        build_child(args.work, args.child, args.model, int(args.on_disk_budget))
        return
    if not (args.work / "exact.npy").is_file():
        prepare(args)
    construction = json.loads((args.work / "construction.json").read_text())
    model = construction["model"]
    results = {}
    for kind in args.types:
        ran = subprocess.run([sys.executable, __file__, "--corpus", str(args.corpus), "--work", str(args.work), "--child", kind, "--model", model,
                              "--on-disk-budget", str(args.on_disk_budget)],
                             capture_output=True, text=True)
        if ran.returncode:
            sys.exit(f"{kind} build failed:\n{ran.stderr[-3000:]}")
        results[kind] = {**json.loads(ran.stdout.strip().splitlines()[-1]), **measure(args.work, kind)}
        print(kind, {k: v for k, v in results[kind].items() if k != "found"}, flush=True)
    for kind in ("ivf-flat", "ivf-pq"):
        if kind in results and f"{kind}-on-disk" in results:
            same = results[kind]["found"] == results[f"{kind}-on-disk"]["found"]
            print(f"on-disk merged {kind} returns the same ids as the one-shot build on the first 50 queries: {same}")
    print("| index | build s | peak anon GB | peak RSS GB | on disk MB | recall@10 | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        print(f"| {kind} | {r['build_s']:.0f} | {r['peak_anon_gb']:.2f} | {r['peak_rss_gb']:.2f} | "
              f"{r['index_bytes_on_disk'] / 1e6:,.0f} | "
              f"{r['recall_at_10']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    print(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), **construction}))


if __name__ == "__main__":
    main()
