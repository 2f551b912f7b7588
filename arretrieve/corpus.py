"""Reading BEIR-format corpora and queries with errors that name the file and line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ArrError


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    @property
    def full_text(self) -> str:
        """What gets encoded: title and text on separate lines (as BEIR's dense retrievers join them)."""
        return f"{self.title}\n{self.text}" if self.title else self.text


def corpus_file(path: Path) -> Path:
    """A BEIR folder (its corpus.jsonl) or a .jsonl file."""
    if path.is_dir():
        candidate = path / "corpus.jsonl"
        if not candidate.is_file():
            raise ArrError(f"{path} has no corpus.jsonl (expected a BEIR folder or a .jsonl file)")
        return candidate
    if not path.is_file():
        raise ArrError(f"{path} does not exist")
    return path


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict]]:
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        line_no = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ArrError(f"{path}:{line_no}: malformed JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ArrError(f"{path}:{line_no}: expected a JSON object")
                yield line_no, row
        except UnicodeDecodeError:
            raise ArrError(f"{path}:{line_no + 1}: not valid UTF-8") from None


def _text_field(row: dict, key: str, path: Path, line_no: int, required: bool) -> str:
    value = row.get(key, "" if not required else None)
    if value is None:
        raise ArrError(f"{path}:{line_no}: missing field {key!r}")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ArrError(f"{path}:{line_no}: field {key!r} must be a string")
    return str(value)


def read_corpus(path: Path) -> list[Document]:
    """Documents of a BEIR corpus (`_id`, `title`, `text`); duplicates and empty texts are errors."""
    source = corpus_file(path)
    documents: list[Document] = []
    seen: dict[str, int] = {}
    for line_no, row in _jsonl_rows(source):
        doc_id = _text_field(row, "_id", source, line_no, required=True)
        if doc_id in seen:
            raise ArrError(f"{source}:{line_no}: duplicate id {doc_id!r} (first at line {seen[doc_id]})")
        seen[doc_id] = line_no
        title = _text_field(row, "title", source, line_no, required=False)
        text = _text_field(row, "text", source, line_no, required=True)
        if not (title.strip() or text.strip()):
            raise ArrError(f"{source}:{line_no}: document {doc_id!r} has no text")
        documents.append(Document(doc_id, title, text))
    if not documents:
        raise ArrError(f"{source} holds no documents")
    return documents
