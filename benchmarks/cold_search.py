"""Cold `arr search`: a new process per query, with the traced query encoder against the eager model.

Each run is a fresh `arr search --json` process, as a user types it. "traced" is the command as
shipped (the cached traced encoder, written by the first search with a model); "eager" is the same
command with the traced cache switched off inside that process (`load_traced`/`save_traced`
replaced before the CLI starts), which is how every search ran before. Runs alternate between
the two, after one warm-up each (page cache, the trace written); the hits of both must be the same
ids with the same scores, in dense mode and in the index's default mode.

    python benchmarks/cold_search.py --index debian-sample --runs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

EAGER = ("import arretrieve.modeling.traced as traced; traced.load_traced = lambda *a: None; "
         "traced.save_traced = lambda *a: False; ")


def run(mode: str, args: list[str]) -> tuple[float, list]:
    prefix = EAGER if mode == "eager" else ""
    code = prefix + "import sys; from arretrieve.cli.app import main; sys.argv = ['arr'] + sys.argv[1:]; main()"
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"{mode} run failed: {out.stderr.strip()}")
    return seconds, [(hit["id"], hit["score"]) for hit in json.loads(out.stdout)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default="debian-sample")
    parser.add_argument("--query", default="HCL configuration parser for python")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    base = ["search", options.query, "-k", str(options.k), "--index", options.index, "--json"]

    same = {}
    for label, extra in (("dense", ["--mode", "dense"]), ("default mode", [])):
        hits = {mode: run(mode, base + extra)[1] for mode in ("traced", "eager")}
        same[label] = hits["traced"] == hits["eager"]
    times: dict[str, list[float]] = {"traced": [], "eager": []}
    for _ in range(options.runs):
        for mode in times:
            times[mode].append(run(mode, base)[0])
    report = {mode: {"median_s": round(statistics.median(t), 2), "runs_s": [round(x, 2) for x in t]}
              for mode, t in times.items()}
    report["eager_over_traced"] = round(report["eager"]["median_s"] / report["traced"]["median_s"], 2)
    report["same_hits_and_scores"] = same
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
