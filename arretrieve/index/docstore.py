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
_BLOCK = 1 << 20


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
            row = {"id": doc.id, "parent": doc.doc_id, "title": doc.title, "text": doc.text}
            if doc.metadata:
                row["meta"] = doc.metadata
            line = json.dumps(row, ensure_ascii=False)
            data = (line + "\n").encode("utf-8")
            handle.write(data)
            position += len(data)
        handle.flush()
        os.fsync(handle.fileno())
    return np.asarray(offsets, dtype=np.int64), position


class DocStore:
    """The rows of one committed generation. The file is opened once and read by position, so a
    store opened before an `--overwrite` (which swaps in a new folder) or an `--add` (which appends)
    keeps reading the rows it was opened with, never the new folder's."""

    def __init__(self, folder: Path, offsets_file: str, count: int, end: int):
        self.path = folder / DOCS_FILE
        try:
            self.offsets = np.load(folder / offsets_file, mmap_mode="r")
        except (OSError, ValueError, EOFError):
            raise ArrError(f"{folder / offsets_file} is missing or corrupted; rebuild the index") from None
        if len(self.offsets) != count or not self.path.is_file():
            raise ArrError(f"the document store in {folder} is inconsistent with the manifest; rebuild the index")
        self._file = open(self.path, "rb")  # noqa: SIM115 (held for the store's life, closed with it)
        if os.fstat(self._file.fileno()).st_size < end:
            self._file.close()
            raise ArrError(f"{self.path} is shorter than its manifest says; rebuild the index")
        self.end = end

    def __len__(self) -> int:
        return len(self.offsets)

    def _row_bytes(self, row: int) -> bytes:
        start = int(self.offsets[row])
        stop = int(self.offsets[row + 1]) if row + 1 < len(self.offsets) else self.end
        return os.pread(self._file.fileno(), stop - start, start)  # no shared file position: thread-safe

    def _payload(self, row: int) -> dict:
        try:
            payload = json.loads(self._row_bytes(row))
            return payload if isinstance(payload, dict) else {}
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise ArrError(f"{self.path} is corrupted at row {row}; rebuild the index") from None

    def get(self, rows: Iterable[int]) -> list[Document]:
        documents = []
        for row in rows:
            payload = self._payload(row)
            try:
                documents.append(Document(payload["id"], payload["title"], payload["text"], payload["parent"],
                                          payload.get("meta")))
            except KeyError:
                raise ArrError(f"{self.path} is corrupted at row {row}; rebuild the index") from None
        return documents

    def iter_ids(self) -> Iterator[tuple[str, str]]:
        """(id, parent document id) of every row, streamed."""
        for row, payload in enumerate(self._payloads()):
            try:
                yield payload["id"], payload["parent"]
            except (KeyError, TypeError):
                raise ArrError(f"{self.path} is corrupted at row {row}; rebuild the index") from None

    def iter_metadata(self) -> Iterator[dict]:
        """Every row's stored metadata ({} where it has none), streamed."""
        for payload in self._payloads():
            meta = payload.get("meta") if isinstance(payload, dict) else None
            yield meta if isinstance(meta, dict) else {}

    def _payloads(self) -> Iterator[dict]:
        """Every row's JSON object, in large positional reads."""
        row, position, pending = 0, 0, b""
        while row < len(self.offsets):
            block = os.pread(self._file.fileno(), min(_BLOCK, self.end - position), position) if position < self.end else b""
            if not block and not pending:
                raise ArrError(f"{self.path} ends before row {row}; rebuild the index")
            position += len(block)
            lines = (pending + block).split(b"\n")
            pending = lines.pop() if block else b""
            for line in lines:
                if row == len(self.offsets):
                    break
                try:
                    payload = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ArrError(f"{self.path} is corrupted at row {row}; rebuild the index") from None
                yield payload
                row += 1

    def close(self) -> None:
        self._file.close()
