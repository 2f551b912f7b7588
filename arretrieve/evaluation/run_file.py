"""TREC run files: `qid Q0 docid rank score tag` per line, fields separated by whitespace, so an
id with whitespace in it cannot be written faithfully: such a run is refused, naming the id, before
anything is written (`--json` keeps any id)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..errors import ArrError

_WHITESPACE = re.compile(r"\s")


def _check_field(kind: str, value: str) -> None:
    if not value or _WHITESPACE.search(value):
        raise ArrError(f"{kind} {value!r} is empty or holds whitespace, which a TREC run cannot hold (trec_eval "
                       "would read it as several fields); write JSON lines instead (--json)")


def write_trec_run(results: dict, path: Path | None, tag: str) -> None:
    """`results` maps query id → ranked hits (objects with .id, .rank and .score)."""
    _check_field("the run tag", tag)
    for query_id, hits in results.items():
        _check_field("query id", str(query_id))
        for hit in hits:
            _check_field("document id", str(hit.id))
    handle = open(path, "w", encoding="utf-8") if path else sys.stdout
    try:
        for query_id, hits in results.items():
            for hit in hits:
                handle.write(f"{query_id} Q0 {hit.id} {hit.rank} {hit.score:.6f} {tag}\n")
    finally:
        if path:
            handle.close()
