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
import json
from pathlib import Path

from arretrieve.training.data_steps import reconstruction_rows


def main() -> None:
    """The recipe data step `reconstruction-rows` (arretrieve/training/data_steps.py) from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compression", help="debian-desc/train/compression.jsonl.gz")
    parser.add_argument("output", type=Path)
    parser.add_argument("--every", type=int, default=2, help="add a reconstruction row after every N-th synopsis row")
    args = parser.parse_args()
    counts = reconstruction_rows(args.compression, args.output, args.every)
    print(json.dumps({**counts, "output": str(args.output)}))


if __name__ == "__main__":
    main()
