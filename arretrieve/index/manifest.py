"""What an index records about how it was built, so search can use (or refuse) the right model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ArrError
from ..home import write_json_atomic

MANIFEST_FILE = "manifest.json"


@dataclass
class IndexManifest:
    name: str
    model: str
    model_fingerprint: str
    encoder: dict[str, Any]
    dim: int
    metric: str
    count: int
    index_type: str
    index_params: dict[str, Any]
    corpus: list[dict[str, Any]]
    toolkit_version: str
    created: str
    generation: int
    files: dict[str, str | None]
    docs_bytes: int

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> IndexManifest:
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise ArrError(f"{folder} is not an index (no {MANIFEST_FILE}); build it with `arr index`")
        try:
            manifest = cls(**json.loads(path.read_text(encoding="utf-8-sig")))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise ArrError(f"{path} is corrupted ({exc}); rebuild the index with `arr index`") from None
        problem = manifest._problem()
        if problem:
            raise ArrError(f"{path}: {problem}; rebuild the index with `arr index`")
        return manifest

    def deleted_rows(self, folder: Path):
        """The rows deletes have hidden (sorted int64; none for an index never deleted from)."""
        import numpy as np

        name = self.files.get("deleted")
        if not name:
            return np.zeros(0, dtype=np.int64)
        try:
            rows = np.load(folder / name, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise ArrError(f"{folder / name} is missing or corrupted; rebuild the index") from None
        if rows.ndim != 1 or rows.dtype.kind != "i" or (len(rows) and (rows.min() < 0 or rows.max() >= self.count)):
            raise ArrError(f"{folder / name} does not list rows of this index; rebuild the index")
        return rows.astype(np.int64)

    def _problem(self) -> str | None:
        """What makes a loaded manifest unusable: wrong types, or a file outside its own folder."""
        if not isinstance(self.files, dict):
            return "`files` must be an object"
        for key, name in self.files.items():
            if name is None:
                continue
            # Only plain names inside the index folder: never a path that leads elsewhere.
            if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or "\\" in name:
                return f"files.{key} = {name!r} is not a file name inside the index folder"
        for field_name in ("count", "dim", "generation", "docs_bytes"):
            value = getattr(self, field_name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return f"{field_name} must be a non-negative integer, not {value!r}"
        if not isinstance(self.index_params, dict) or not isinstance(self.corpus, list) or not isinstance(self.encoder, dict):
            return "index_params, corpus and encoder have the wrong types"
        return None


def model_for_index(manifest: IndexManifest, registry: Registry):
    """The registry entry that built an index, refused if it is gone or its fingerprint changed."""
    if manifest.model not in registry.names():
        raise ArrError(f"index {manifest.name!r} was built with model {manifest.model!r}, which is no longer in the "
                       "registry; restore that entry (`arr models add`) or rebuild the index with another model")
    entry = registry.get(manifest.model)
    if entry.fingerprint != manifest.model_fingerprint:
        raise ArrError(
            f"index {manifest.name!r} was built with model {entry.name!r} at fingerprint {manifest.model_fingerprint}, "
            f"but that registry entry now has fingerprint {entry.fingerprint}: its vectors would not match new ones. "
            f"Rebuild the index (`arr index --overwrite`) or restore the model entry"
        )
    return entry
