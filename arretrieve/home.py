"""Where arretrieve keeps its state: user registry entries, converted base models, caches.

`ARR_HOME` overrides the location; the default follows the XDG data directory convention.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


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


def save_npy_atomic(path: Path, array) -> None:
    """np.save so that readers (and concurrent writers) see either no file or a complete one."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON so that readers see either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, ensure_ascii=False, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
