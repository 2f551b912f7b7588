"""Where arretrieve keeps its state: user registry entries, converted base models, caches.

`ARR_HOME` overrides the location; the default follows the XDG data directory convention.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from .errors import ArrError


def arr_home() -> Path:
    explicit = os.environ.get("ARR_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "arretrieve"


def base_cache_dir() -> Path:
    return arr_home() / "cache" / "bases"


def encoding_cache_dir() -> Path:
    """Encoded corpora (sharded vectors), shared by `arr index` and `arr beir-eval`."""
    return arr_home() / "cache" / "encodings"


def merged_cache_dir() -> Path:
    """Adapter models merged into their base once, per entry fingerprint and dtype (fast loads)."""
    return arr_home() / "cache" / "merged"


def traced_cache_dir() -> Path:
    """Traced encoders for cold starts, per entry fingerprint, dtype, pooling and torch version."""
    return arr_home() / "cache" / "traced"


def reference_cache_dir() -> Path:
    """Stage-2 reference scores, one file per (model, data, settings)."""
    return arr_home() / "cache" / "reference"


def beir_cache_dir() -> Path:
    """Downloaded BEIR sets and the indexes `arr beir-eval` builds over them."""
    return arr_home() / "cache" / "beir"


def hash_cache_file() -> Path:
    """sha256 of base models and weight folders, keyed by path and file signatures (one JSON file)."""
    return arr_home() / "cache" / "hashes.json"


def write_atomic(path: Path, write: Callable[[IO], None], binary: bool = False, replace: bool = True) -> None:
    """Write a file so that readers (and concurrent writers) see either no file, the old one, or
    the complete new one. `replace=False` never overwrites: if the file appeared meanwhile (another
    process wrote it), FileExistsError is raised and nothing is changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic create-if-absent
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_npy_atomic(path: Path, array) -> None:
    import numpy as np

    write_atomic(path, lambda handle: np.save(handle, array), binary=True)


def write_json_atomic(path: Path, payload: Any, replace: bool = True) -> None:
    def write(handle) -> None:
        json.dump(payload, handle, indent=2, ensure_ascii=False, sort_keys=True)
        handle.write("\n")

    write_atomic(path, write, replace=replace)


FOLDER_POLICIES = ("keep", "refuse", "replace")


def write_folder_atomic(target: Path, write: Callable[[Path], None], marker: str, record: dict | Callable[[], dict],
                        existing: str = "keep") -> None:
    """Write a folder at `target` whole or not at all: `write` fills a staging folder beside it,
    `marker` (JSON: `record`, or what it returns once `write` is done) is written last, then the
    folder is renamed into place. What happens to a folder already at `target`:
      keep     a cache: a concurrent writer that got there first wins;
      refuse   a folder the user names: it must not exist or be an empty folder;
      replace  a rebuild the user asked for (`--overwrite`): the old folder goes, the new one takes its place."""
    if existing not in FOLDER_POLICIES:
        raise ValueError(f"existing must be one of {FOLDER_POLICIES}")
    if existing == "refuse" and _occupied(target):
        raise ArrError(f"{target} already exists and is not an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        write_json_atomic(staging / marker, record() if callable(record) else record)
        if existing == "replace" and target.exists():
            shutil.rmtree(target)
        try:
            os.replace(staging, target)  # onto nothing, or onto an empty folder
        except OSError:
            if existing == "refuse":
                raise ArrError(f"{target} appeared while it was being written; nothing was changed") from None
            if existing == "replace" or not (target / marker).is_file():  # not a concurrent writer that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))
