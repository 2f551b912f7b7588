"""A corpus as a re-readable stream of documents, validated in one pass before any encoding."""

from __future__ import annotations

import difflib
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import ArrError
from ..hashing import sha256_file
from .chunking import Chunking
from .document import Document, not_text
from .readers import Row, corpus_files, read_rows


@dataclass(frozen=True)
class FieldNames:
    id: str = "_id"
    text: str = "text"
    title: str = "title"


@dataclass
class CorpusScan:
    """What a validation pass found: documents kept, and what was skipped, by reason."""

    documents: int = 0
    chunks: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    advice: str | None = None  # the first skipped row's advice (a field named otherwise, say)

    def summary(self) -> str:
        if not self.skipped:
            return "no rows skipped"
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return f"skipped {sum(self.skipped.values())} rows ({reasons}); first: {'; '.join(self.skipped_examples)}"


class BadRow(Exception):
    """A row that cannot become a document: `reason` is the category counted when skipping;
    `advice` replaces the --skip-invalid suggestion where skipping is not the fix."""

    def __init__(self, reason: str, detail: str | None = None, advice: str | None = None):
        super().__init__(detail or reason)
        self.reason, self.advice = reason, advice


# Names corpora give their fields, for the advice on a missing one (BEIR's own names first).
_USUAL_NAMES = {"id": ("_id", "id", "doc_id", "docid", "pid", "key"),
                "text": ("text", "body", "content", "contents", "passage", "document", "abstract"),
                "title": ("title", "name", "heading")}


def _missing_field_advice(role: str, payload: dict) -> str:
    """What to pass when a row lacks the field for `role`: the row's own fields, and the likeliest."""
    present = [str(key) for key in payload]
    guess = next((name for name in _USUAL_NAMES[role] if name in payload), None)
    if guess is None:
        close = difflib.get_close_matches(_USUAL_NAMES[role][0], present, n=1, cutoff=0.5)
        guess = close[0] if close else None
    flag = f"--{role}-field"
    suggestion = f"; if it is {guess!r}, pass {flag} {guess}" if guess else f"; name it with {flag}"
    return f" (the row's fields: {', '.join(map(repr, present)) or 'none'}{suggestion}, or {role}_field= in Python)"


def _string(value, key: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRow("wrong type", f"field {key!r} must be a string")
    text = str(value)
    problem = not_text(text)
    if problem:
        raise BadRow("not text", f"field {key!r} {problem}")
    return text


class CorpusSource:
    """Documents of a corpus path; `scan()` validates everything, `documents()` streams the good ones."""

    def __init__(
        self,
        path: Path,
        fields: FieldNames = FieldNames(),
        skip_invalid: bool = False,
        chunking: Chunking | None = None,
        metadata_fields: tuple[str, ...] = (),
    ):
        self.path = Path(path)
        self.files = corpus_files(self.path)
        self.fields = fields
        self.skip_invalid = skip_invalid
        self.chunking = chunking
        # Stored with each document, never encoded: not part of the fingerprint the vectors are cached by.
        self.metadata_fields = tuple(metadata_fields)
        self._scan: CorpusScan | None = None

    def _document(self, row: Row) -> Document:
        """The row as a document, or BadRow naming what is wrong with it."""
        if row.problem:
            raise BadRow(row.problem.split(" (")[0], row.problem)
        payload = row.fields or {}
        for role, key in (("id", self.fields.id), ("text", self.fields.text)):
            if key not in payload:
                raise BadRow("missing field", f"missing field {key!r}", _missing_field_advice(role, payload))
        doc_id = _string(payload[self.fields.id], self.fields.id).strip()
        if not doc_id:
            raise BadRow("empty id")
        title = _string(payload.get(self.fields.title), self.fields.title)
        text = _string(payload[self.fields.text], self.fields.text)
        if not (title.strip() or text.strip()):
            raise BadRow("empty text", f"document {doc_id!r} has no text")
        metadata = {}
        for key in self.metadata_fields:
            value = payload.get(key)
            if value is not None and (not isinstance(value, (str, int, float, bool)) or
                                      (isinstance(value, str) and not_text(value))):
                raise BadRow("wrong type", f"metadata field {key!r} must be a string, number, true/false or null")
            metadata[key] = value
        return Document(doc_id, title, text, metadata=metadata or None)

    def _walk(self, scan: CorpusScan | None) -> Iterator[Document]:
        """Good documents in order; with `scan` given, problems are raised or counted into it."""
        first_seen: dict[str, str] = {}
        for row in read_rows(self.path):
            try:
                document = self._document(row)
                if document.id in first_seen:
                    raise BadRow("duplicate id", f"duplicate id {document.id!r} (first at {first_seen[document.id]})")
            except BadRow as exc:
                if scan is None:  # a problem found while scanning was skipped then; skip again
                    continue
                if not self.skip_invalid:
                    # Before any good row, a missing field is likelier a field named otherwise than a bad row.
                    advice = exc.advice if exc.advice and not first_seen else " (pass --skip-invalid to skip such rows)"
                    raise ArrError(f"{row.location}: {exc}{advice}") from None
                scan.advice = scan.advice or exc.advice
                scan.skipped[exc.reason] += 1
                if len(scan.skipped_examples) < 3:
                    scan.skipped_examples.append(f"{row.location}: {exc}")
                continue
            first_seen[document.id] = row.location
            yield document

    def scan(self) -> CorpusScan:
        """Validate the whole corpus (one pass); errors name file and line unless skipping."""
        if self._scan is None:
            scan = CorpusScan()
            for document in self._walk(scan):
                scan.documents += 1
                scan.chunks += sum(1 for _ in self.chunking.split(document)) if self.chunking else 1
            if scan.documents == 0:
                raise ArrError(f"{self.path} holds no usable documents ({scan.summary()}){scan.advice or ''}")
            self._scan = scan
        return self._scan

    def documents(self) -> Iterator[Document]:
        """Validated documents (chunks, when chunking) in corpus order, streamed."""
        self.scan()
        for document in self._walk(None):
            if self.chunking:
                yield from self.chunking.split(document)
            else:
                yield document

    def fingerprint(self) -> str:
        """sha256 over the input files and the options that change which documents come out."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.name.encode())
            digest.update(sha256_file(path).encode())
        digest.update(repr((self.fields, self.skip_invalid, self.chunking)).encode())
        return digest.hexdigest()
