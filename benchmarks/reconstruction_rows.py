"""Stage-1 rows that ask the decoder to rebuild the whole text from its states (ICAE's autoencoding
task), interleaved with the ordinary synopsis rows, from Debian's `compression.jsonl.gz`.

A synopsis is ~10 tokens, most of them predictable from what synopses look like in general, so a
synopsis row carries little document-specific signal; rebuilding the ~90-token description can
only succeed if the states carry the document. Every `--every`-th source row is written a second
time as

    {"context": description, "instruction": "Repeat the text above.", "output": description}

right after its synopsis row, so a batch mixes both tasks and the data order stays the file's.

    python benchmarks/reconstruction_rows.py data/debian-desc/train/compression.jsonl.gz \
        runs/data/compression-reconstruction.jsonl --every 2
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

INSTRUCTION = "Repeat the text above."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compression", type=Path, help="debian-desc/train/compression.jsonl.gz")
    parser.add_argument("output", type=Path)
    parser.add_argument("--every", type=int, default=2, help="add a reconstruction row after every N-th synopsis row")
    args = parser.parse_args()
    if args.every < 1:
        parser.error("--every must be at least 1")

    synopsis_rows = reconstruction_rows = 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.compression, "rt", encoding="utf-8") as rows, args.output.open("w", encoding="utf-8") as out:
        for index, row in enumerate(map(json.loads, rows)):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            synopsis_rows += 1
            if index % args.every == 0:
                rebuilt = {"context": row["context"], "instruction": INSTRUCTION, "output": row["context"]}
                out.write(json.dumps(rebuilt, ensure_ascii=False) + "\n")
                reconstruction_rows += 1
    print(json.dumps({"synopsis_rows": synopsis_rows, "reconstruction_rows": reconstruction_rows, "output": str(args.output)}))


if __name__ == "__main__":
    main()
