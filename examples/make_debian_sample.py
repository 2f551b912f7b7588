"""Rebuild examples/debian-sample/ from the Debian descriptions dev set (run from the repo root).

    python examples/make_debian_sample.py data/debian-desc/dev

Takes the first 120 dev queries (file order), all their relevant documents, and the first
distractor documents of the dev corpus up to 300 documents, as a small BEIR folder: the recipe
data step `beir-sample` (arretrieve/training/data_steps.py), which the recipes run themselves.
"""

import sys
from pathlib import Path

from arretrieve.training.data_steps import beir_sample

counts = beir_sample(sys.argv[1], Path(__file__).parent / "debian-sample", split="dev", queries=120, documents=300)
print(f"{counts['documents']} documents, {counts['queries']} queries, {counts['qrels']} qrels → examples/debian-sample")
