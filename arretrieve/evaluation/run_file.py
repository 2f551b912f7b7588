"""TREC run files: `qid Q0 docid rank score tag` per line."""

from __future__ import annotations

import sys
from pathlib import Path


def write_trec_run(results: dict, path: Path | None, tag: str) -> None:
    """`results` maps query id → ranked hits (objects with .id, .rank and .score)."""
    handle = open(path, "w", encoding="utf-8") if path else sys.stdout
    try:
        for query_id, hits in results.items():
            for hit in hits:
                handle.write(f"{query_id} Q0 {hit.id} {hit.rank} {hit.score:.6f} {tag}\n")
    finally:
        if path:
            handle.close()
