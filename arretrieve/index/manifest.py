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
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as exc:
            raise ArrError(f"{path} is corrupted ({exc}); rebuild the index with `arr index`") from None
