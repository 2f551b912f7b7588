"""Stage-2 rows for AutoRegEmbed in the paper's orientation, from the Debian training files.

The paper aligns on NLI triplets: the encoder reads a premise, and the frozen decoder scores the
short hypotheses (entailment vs contradiction) from its compressed vectors. Debian's
`triplets.jsonl` is oriented the other way for retrieval (short synopsis as query, long
description as positive and negatives), which makes every decoder target a ~90-token document:
summed log-probabilities then differ by hundreds of nats (β saturates) and each step decodes
three documents. This script writes the same training pairs in the paper's orientation:

    {"query": long description, "pos": its synopsis, "neg": [synopses of the row's negative documents]}

so the decoder scores synopses (~10 tokens) and stage 2 continues exactly what stage 1 trains
(`compression.jsonl`: description → synopsis). Negatives keep the file's choice of documents
(same Section first); a row is dropped and counted when one of its negative documents has no
synopsis in the training files, or has the positive's own synopsis (not a negative then).

    python benchmarks/synopsis_triplets.py data/debian-desc/train runs/synopsis-triplets.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path, help="debian-desc/train (triplets.jsonl.gz, compression.jsonl.gz)")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()

    with gzip.open(args.train / "compression.jsonl.gz", "rt", encoding="utf-8") as rows:
        synopsis = {row["context"]: row["output"] for row in map(json.loads, rows)}
    written = dropped = 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.train / "triplets.jsonl.gz", "rt", encoding="utf-8") as rows, \
            args.output.open("w", encoding="utf-8") as out:
        for row in map(json.loads, rows):
            negatives = [synopsis.get(doc) for doc in row["neg"]]
            if any(n is None or n == row["query"] for n in negatives):
                dropped += 1
                continue
            out.write(json.dumps({"query": row["pos"], "pos": row["query"], "neg": negatives}, ensure_ascii=False) + "\n")
            written += 1
    print(json.dumps({"written": written, "dropped_without_distinct_negative_synopsis": dropped, "output": str(args.output)}))


if __name__ == "__main__":
    main()
