"""Ids, titles and texts of indexed documents, in vector order, readable one row at a time.

`docs.jsonl` holds one JSON object per vector; an offsets file gives each row's byte position, so
search reads only the rows it shows and start-up does not load the corpus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..corpus import Document
from ..errors import ArrError

DOCS_FILE = "docs.jsonl"


def append_documents(path: Path, documents: Iterable[Document], keep_bytes: int = 0) -> tuple[np.ndarray, int]:
    """Append documents after the first `keep_bytes` bytes (dropping anything an interrupted run left).

    Returns the new rows' offsets and the file's new size.
    """
    mode = "r+b" if path.exists() else "wb"
    offsets = []
    with open(path, mode) as handle:
        handle.truncate(keep_bytes)
        handle.seek(keep_bytes)
        position = keep_bytes
        for doc in documents:
            offsets.append(position)
            line = json.dumps({"id": doc.id, "parent": doc.doc_id, "title": doc.title, "text": doc.text}, ensure_ascii=False)
            data = (line + "\n").encode("utf-8")
            handle.write(data)
            position += len(data)
        handle.flush()
        os.fsync(handle.fileno())
    return np.asarray(offsets, dtype=np.int64), position


class DocStore:
    def __init__(self, folder: Path, offsets_file: str, count: int):
        self.path = folder / DOCS_FILE
        try:
            self.offsets = np.load(folder / offsets_file, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            raise ArrError(f"{folder / offsets_file} is missing or corrupted; rebuild the index") from None
        if len(self.offsets) != count or not self.path.is_file():
            raise ArrError(f"the document store in {folder} is inconsistent with the manifest; rebuild the index")

    def __len__(self) -> int:
        return len(self.offsets)

    def get(self, rows: Iterable[int]) -> list[Document]:
        documents = []
        with open(self.path, "rb") as handle:
            for row in rows:
                handle.seek(int(self.offsets[row]))
                try:
                    payload = json.loads(handle.readline())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ArrError(f"{self.path} is corrupted at row {row}; rebuild the index") from None
                documents.append(Document(payload["id"], payload["title"], payload["text"], payload["parent"]))
        return documents

    def iter_ids(self) -> Iterator[tuple[str, str]]:
        """(id, parent document id) of every row, streamed."""
        with open(self.path, "rb") as handle:
            for _ in range(len(self.offsets)):
                payload = json.loads(handle.readline())
                yield payload["id"], payload["parent"]
