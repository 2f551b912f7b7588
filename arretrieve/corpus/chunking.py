"""Cutting long documents into overlapping word windows; chunk ids derive from document ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from ..errors import ArrError
from .document import Document

CHUNK_SEPARATOR = "#"


@dataclass(frozen=True)
class Chunking:
    words: int
    overlap: int = 0

    def __post_init__(self) -> None:
        if self.words < 1 or not 0 <= self.overlap < self.words:
            raise ArrError("chunking needs words >= 1 and 0 <= overlap < words")

    def split(self, document: Document) -> Iterator[Document]:
        """`doc#0`, `doc#1`, ...: windows of `words` words, each starting `words - overlap` after the last."""
        words = document.text.split()
        step = self.words - self.overlap
        starts = range(0, max(len(words) - self.overlap, 1), step)
        for number, start in enumerate(starts):
            yield Document(
                id=f"{document.id}{CHUNK_SEPARATOR}{number}",
                title=document.title,
                text=" ".join(words[start : start + self.words]),
                parent=document.id,
                metadata=document.metadata,
            )
