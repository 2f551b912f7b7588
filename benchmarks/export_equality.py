"""Does a sentence-transformers export encode what arretrieve encodes? Both, side by side, in float32.

    python benchmarks/export_equality.py --model autoregembed-smollm2-135m \
        --data data/debian-desc/dev --split dev --texts 100

Exports the model to a temporary folder (`arr models export --format sentence-transformers`), loads
it with `SentenceTransformer`, and compares the vectors of the first N queries (query role) and of
their relevant documents (document role) with arretrieve's. Target (issue 16): cosine >= 0.999.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="registry name")
    parser.add_argument("--data", required=True, help="a BEIR folder")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--texts", type=int, default=100)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    from arretrieve.encoding import load_embedder
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.compression_probe import pairs_from_beir
    from arretrieve.export.sentence_transformers import export_sentence_transformers
    from arretrieve.registry import Registry

    entry = Registry().get(args.model)
    pairs = pairs_from_beir(load_dataset(args.data, args.split), args.texts)
    ours = load_embedder(entry, device="cpu", dtype="float32")
    report = {"model": args.model, "fingerprint": entry.fingerprint, "data": args.data, "texts": len(pairs.targets),
              "machine": platform.node(), "date": time.strftime("%Y-%m-%d")}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        folder = export_sentence_transformers(entry, Path(scratch) / "st")
        report["export_seconds"] = round(time.perf_counter() - started, 1)
        report["folder_mb"] = round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 1)
        loaded = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
        for role, texts, theirs in (("query", pairs.targets, loaded.encode_query),
                                    ("document", pairs.sources, loaded.encode_document)):
            a, b = ours.encode(texts, role=role), theirs(texts, convert_to_numpy=True)
            cosines = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            report[role] = {"min_cosine": round(float(cosines.min()), 6), "mean_cosine": round(float(cosines.mean()), 6),
                            "max_abs_diff": float(np.abs(a - b).max())}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
