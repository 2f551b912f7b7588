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
import json
from pathlib import Path

from arretrieve.training.data_steps import paper_triplets


def main() -> None:
    """The recipe data step `paper-triplets` (arretrieve/training/data_steps.py) from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train", type=Path, help="debian-desc/train (triplets.jsonl.gz, compression.jsonl.gz)")
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    counts = paper_triplets(str(args.train / "triplets.jsonl.gz"), args.output, str(args.train / "compression.jsonl.gz"))
    print(json.dumps({**counts, "output": str(args.output)}))


if __name__ == "__main__":
    main()
