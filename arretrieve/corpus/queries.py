"""Reading query files: BEIR `queries.jsonl` (`_id`, `text`) or TSV (`id<TAB>text`)."""

from __future__ import annotations

from pathlib import Path

from .document import not_text
from .readers import read_jsonl
from ..errors import ArrError


def read_queries(path: Path) -> dict[str, str]:
    """Query id → text, in file order; malformed lines, duplicates and empty queries are errors."""
    if not path.is_file():
        raise ArrError(f"{path} does not exist")
    queries: dict[str, str] = {}
    for location, query_id, text in _rows(path):
        if not query_id:
            raise ArrError(f"{location}: missing query id")
        if query_id in queries:
            raise ArrError(f"{location}: duplicate query id {query_id!r}")
        if not text.strip():
            raise ArrError(f"{location}: query {query_id!r} is empty")
        problem = not_text(query_id) or not_text(text)
        if problem:
            raise ArrError(f"{location}: query {query_id!r} {problem}")
        queries[query_id] = text
    if not queries:
        raise ArrError(f"{path} holds no queries")
    return queries


def _rows(path: Path):
    if path.suffix.lower() in (".tsv", ".txt"):
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                location = f"{path}:{line_no}"
                try:
                    line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
                    line = line.removeprefix("\ufeff") if line_no == 1 else line
                except UnicodeDecodeError:
                    raise ArrError(f"{location}: not valid UTF-8") from None
                if not line.strip():
                    continue
                if "\t" not in line:
                    raise ArrError(f"{location}: expected 'id<TAB>text'")
                query_id, text = line.split("\t", 1)
                yield location, query_id.strip(), text
        return
    for row in read_jsonl(path):
        if row.problem:
            raise ArrError(f"{row.location}: {row.problem}")
        payload = row.fields or {}
        query_id, text = payload.get("_id", payload.get("id")), payload.get("text")
        if not isinstance(text, str):
            raise ArrError(f"{row.location}: field 'text' must be a string")
        yield row.location, str(query_id).strip() if query_id is not None else "", text
