"""A bounded load test of `arr serve` on loopback: latency percentiles and throughput at two concurrencies.

    python benchmarks/serve_load.py                         # the sample corpus, the default model
    python benchmarks/serve_load.py --requests 200 --max-seconds 120 --concurrency 1 --concurrency 8
    python benchmarks/serve_load.py --concurrency 1 --beside 64   # a lone client beside 64 loaders
    python benchmarks/serve_load.py --batch-gain                  # + 64 queued queries: one by one vs one batch
    python benchmarks/serve_load.py --concurrency 1 --auth        # without the token, then with it, back to back

Builds (once) an index of `examples/debian-sample` with the model in a scratch index folder under
$ARR_HOME, starts `arr serve` on a free loopback port, sends k=10 GET /search requests with the
sample's queries (a few warm-up requests first), and reports p50/p99 latency and QPS per
concurrency. Never more than --requests requests or --max-seconds per concurrency level.
Target (issue 14): p50 < 50 ms at concurrency 1 on this CPU. `--beside N` then times one client
sending requests one after another while N others send theirs as fast as they are answered (after
a 503 they wait its Retry-After, as a well-behaved client does), the server with its default
`ServerLimits`; extra arguments
after `--` go to `arr serve` (e.g. `-- --max-queued 100000` to lift the queue bound). `--auth` runs
the same levels twice, on a server without a token and then on one with a token (every request
carrying `Authorization: Bearer …`), so the cost of the check is read from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _level(httpx, url: str, queries: list[str], concurrency: int, requests: int, max_seconds: float,
           headers: dict[str, str]) -> dict:
    deadline = time.monotonic() + max_seconds
    client = httpx.Client(timeout=60, headers=headers)

    def one(i: int) -> float | None:
        if time.monotonic() > deadline:
            return None
        started = time.perf_counter()
        response = client.get(url, params={"q": queries[i % len(queries)], "k": 10})
        response.raise_for_status()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for t in pool.map(one, range(requests)) if t is not None]
    wall = time.perf_counter() - started
    client.close()
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "qps": round(len(latencies) / wall, 1)}


def _beside(httpx, url: str, queries: list[str], loaders: int, requests: int, max_seconds: float,
            headers: dict[str, str]) -> dict:
    """One client's latencies while `loaders` others keep the server busy."""
    import threading

    stop, counts, lock = threading.Event(), {"ok": 0, "busy": 0}, threading.Lock()

    def load(seed: int) -> None:
        with httpx.Client(timeout=120, headers=headers) as client:
            i = seed
            while not stop.is_set():
                response = client.get(url, params={"q": queries[i % len(queries)], "k": 10})
                with lock:
                    counts["ok" if response.status_code == 200 else "busy"] += 1
                if response.status_code == 503:  # a well-behaved client waits as it is told
                    time.sleep(float(response.headers.get("retry-after", 1)))
                i += loaders

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(loaders)]
    for thread in threads:
        thread.start()
    time.sleep(3)  # let the queue fill
    latencies, refused, deadline = [], 0, time.monotonic() + max_seconds
    with httpx.Client(timeout=120, headers=headers) as client:
        for i in range(requests):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            response = client.get(url, params={"q": queries[(7 * i) % len(queries)], "k": 10})
            if response.status_code == 503:
                refused += 1
            else:
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    ms = np.array(latencies) * 1000
    return {"loaders": loaders, "lone_requests": len(latencies), "lone_refused_503": refused,
            "lone_p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "lone_p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
            "loader_answers": counts["ok"], "loader_503": counts["busy"]}


def _batch_gain(store, name: str, queries: list[str], repeats: int = 3) -> dict:
    """Best of `repeats`: the queries searched one by one against the same queries as one batch."""
    from arretrieve.api import Index

    index = Index(name, index_dir=store.root)
    index.search_many(queries[:8], 10)  # load and warm up
    single, batch = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for query in queries:
            index.search(query, 10)
        single.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.search_many(queries, 10)
        batch.append(time.perf_counter() - started)
    return {"queries": len(queries), "one_by_one_ms": round(min(single) * 1000), "one_batch_ms": round(min(batch) * 1000),
            "ratio": round(min(single) / min(batch), 2)}


def _serve_and_load(httpx, store, name: str, queries: list[str], args, token: str | None) -> dict:
    """Start `arr serve` (with `token`, if given) on a free loopback port, time the levels, stop it."""
    from arretrieve.server.limits import TOKEN_VARIABLE

    port = _free_port()
    env = {**os.environ, "ARR_INDEXES": str(store.root)}
    env.pop(TOKEN_VARIABLE, None)
    if token:
        env[TOKEN_VARIABLE] = token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    server = subprocess.Popen([sys.executable, "-m", "arretrieve.cli.app", "serve", "--index", name, "--port", str(port),
                               *args.serve_args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/search"
    try:
        started = time.monotonic()
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() - started > 300:
                raise SystemExit("the server did not start")
            time.sleep(0.3)
        startup = round(time.monotonic() - started, 1)
        if token:  # the check is really on: a request without the token is refused
            if httpx.get(url, params={"q": queries[0], "k": 10}, timeout=60).status_code != 401:
                raise SystemExit("the server answered a request without its token")
        for query in queries[:10]:  # warm-up: first-call allocations, oneDNN kernel selection
            httpx.get(url, params={"q": query, "k": 10}, headers=headers, timeout=60).raise_for_status()
        levels = [_level(httpx, url, queries, c, args.requests, args.max_seconds, headers)
                  for c in (args.concurrency or [1, 8])]
        beside = (_beside(httpx, url, queries, args.beside, args.requests, args.max_seconds, headers)
                  if args.beside else None)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"token": bool(token), "server_startup_s": startup, "levels": levels, "beside": beside}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="registry name (default: the registry's default)")
    parser.add_argument("--corpus", default=str(ROOT / "examples" / "debian-sample"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--concurrency", type=int, action="append")
    parser.add_argument("--beside", type=int, default=0, help="loaders beside a lone client (0: none)")
    parser.add_argument("--batch-gain", action="store_true",
                        help="also time, in this process, 64 queries searched one by one and as the one batch "
                             "the server's model thread makes of queued requests")
    parser.add_argument("--auth", action="store_true",
                        help="run the levels without a token, then on a server with one (requests carry it)")
    parser.add_argument("serve_args", nargs="*", help="after --: more `arr serve` arguments")
    args = parser.parse_args()

    import httpx

    from arretrieve.home import arr_home
    from arretrieve.index import IndexStore, build_index
    from arretrieve.corpus.queries import read_queries
    from arretrieve.registry import Registry

    entry = Registry().resolve(args.model)
    store = IndexStore(arr_home() / "benchmark-indexes")
    name = f"serve-load-{entry.name}"
    if name not in store.names():
        build_index(Path(args.corpus), name=name, model=entry.name, store=store)
    queries = list(read_queries(Path(args.corpus) / "queries.jsonl").values())
    batch_gain = _batch_gain(store, name, queries[:64]) if args.batch_gain else None
    runs = [_serve_and_load(httpx, store, name, queries, args, token) for token in
            ([None, secrets.token_urlsafe(32)] if args.auth else [None])]
    print(json.dumps({"model": entry.name, "corpus": args.corpus, "serve_args": args.serve_args,
                      "runs": runs, "batch_gain": batch_gain,
                      "machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
