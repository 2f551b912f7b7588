"""`arr cache list|prune`: what the toolkit keeps under $ARR_HOME/cache, and removing it.

Everything there can be rebuilt: removing an entry costs only the time to recompute it (an index
never reads the encoding cache after it is built; `--add` encodes only the new documents).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ArrError
from .home import (base_cache_dir, beir_cache_dir, encoding_cache_dir, hash_cache_file, merged_cache_dir,
                   reference_cache_dir, traced_cache_dir)

# kind → (folder of entries, or a file that is the one entry; what one entry is)
CACHES: dict[str, tuple[Callable[[], Path], str]] = {
    "encodings": (encoding_cache_dir, "a corpus encoded by one model (sharded vectors)"),
    "reference": (reference_cache_dir, "stage-2 reference scores of one training set"),
    "beir": (beir_cache_dir, "downloaded BEIR sets and beir-eval's indexes"),
    "bases": (base_cache_dir, "a GGUF base converted to safetensors"),
    "merged": (merged_cache_dir, "an adapter model merged into its base, for fast loads"),
    "traced": (traced_cache_dir, "a traced query encoder, for fast cold searches"),
    "hashes": (hash_cache_file, "the content hashes of bases and weights (recomputed when a file changes)"),
}


@dataclass(frozen=True)
class CacheEntry:
    kind: str
    path: Path
    bytes: int
    modified: float

    @property
    def age_days(self) -> float:
        return (time.time() - self.modified) / 86400


def _size(path: Path) -> tuple[int, float]:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), max([s.st_mtime for s in stats] or [path.stat().st_mtime])


def cache_entries(kinds: list[str] | None = None) -> list[CacheEntry]:
    """Every entry of the given kinds (default: all), largest first."""
    entries = []
    for kind in kinds or list(CACHES):
        if kind not in CACHES:
            raise ArrError(f"unknown cache {kind!r}; known: {', '.join(CACHES)}")
        location = CACHES[kind][0]()
        children = sorted(location.iterdir()) if location.is_dir() else [location] if location.is_file() else []
        for child in children:
            if not child.name.startswith("."):
                size, modified = _size(child)
                entries.append(CacheEntry(kind, child, size, modified))
    return sorted(entries, key=lambda e: -e.bytes)


def prune(kinds: list[str], older_than_days: float = 0.0, dry_run: bool = False) -> list[CacheEntry]:
    """Remove the entries of `kinds` untouched for more than `older_than_days`; returns them."""
    if not kinds:
        raise ArrError(f"name the caches to prune ({', '.join(CACHES)}, or all)")
    chosen = [e for e in cache_entries(list(CACHES) if kinds == ["all"] else kinds) if e.age_days >= older_than_days]
    if not dry_run:
        for entry in chosen:
            _remove(entry.path)
        for kind in CACHES if kinds == ["all"] else kinds:  # what a killed prune left behind
            location = CACHES[kind][0]()
            for leftover in location.glob(f"{PRUNING_PREFIX}*") if location.is_dir() else []:
                shutil.rmtree(leftover, ignore_errors=True)
    return chosen


PRUNING_PREFIX = ".pruning-"


def _remove(path: Path) -> None:
    """Remove an entry in one step as its readers see it: a folder is first renamed to a hidden
    name (never read, swept by the next prune), so a kill midway leaves no entry whose marker
    survives its files."""
    if not path.is_dir():
        path.unlink(missing_ok=True)
        return
    doomed = path.with_name(f"{PRUNING_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, doomed)
    except FileNotFoundError:  # another prune took it
        return
    shutil.rmtree(doomed)
