"""A document (or a chunk of one) as indexed and shown."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    # The document a chunk was cut from (its own id when it was not chunked).
    parent: str = ""

    @property
    def full_text(self) -> str:
        """What gets encoded: title and text on separate lines (as BEIR's dense retrievers join them)."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    @property
    def doc_id(self) -> str:
        return self.parent or self.id
