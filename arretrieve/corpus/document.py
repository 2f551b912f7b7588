"""A document (or a chunk of one) as indexed and shown."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def not_text(value: str) -> str | None:
    """Why a string cannot be stored or tokenised as text, or None: a lone surrogate (from a JSON
    "\\ud800" escape, or from bytes that were not UTF-8 on a command line) has no UTF-8 form."""
    found = _SURROGATE.search(value)
    if found is None:
        return None
    return (f"holds a lone surrogate (U+{ord(found.group()):04X}) at character {found.start()}, which is not text "
            "(a broken \\u escape, or bytes that are not UTF-8)")


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    # The document a chunk was cut from (its own id when it was not chunked).
    parent: str = ""
    # Stored fields a search can filter on (`where=`): strings, numbers, true/false or null.
    metadata: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def full_text(self) -> str:
        """What gets encoded: title and text on separate lines (as BEIR's dense retrievers join them)."""
        return f"{self.title}\n{self.text}" if self.title else self.text

    @property
    def doc_id(self) -> str:
        return self.parent or self.id
