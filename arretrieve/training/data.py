"""Training examples: read, check every row before any compute, and fingerprint the data.

Local JSON-lines files are read line by line so errors name the exact line; JSON, CSV/TSV and
Parquet files and Hugging Face dataset ids are read with `datasets` (errors name the row).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..corpus.readers import (
    DATASETS_FORMATS,
    DELIMITED_FORMATS,
    JSONL_SUFFIXES,
    Row,
    datasets_load,
    read_delimited,
    read_jsonl,
    read_with_datasets,
)
from ..errors import ArrError
from ..hashing import sha256_file
from .config import FieldMap


@dataclass
class CompressionExample:
    context: str
    instruction: str
    output: str


@dataclass
class Triplet:
    query: str
    pos: str
    negs: list[str]


def _hub_rows(name: str) -> Iterator[Row]:
    load_dataset = datasets_load()

    try:
        dataset = load_dataset(name, split="train")
    except Exception as exc:  # noqa: BLE001 - offline, missing or private datasets raise many types
        raise ArrError(
            f"cannot load the dataset {name!r} ({type(exc).__name__}); without a network, download it "
            "elsewhere and pass a local .jsonl/.parquet file instead"
        ) from None
    for number, payload in enumerate(dataset, start=1):
        yield Row(f"{name} row {number}", dict(payload))


def read_rows(source: str) -> tuple[Iterator[Row], str]:
    """Rows of a local file or a hub dataset id, and a fingerprint of the data."""
    path = Path(source).expanduser()
    if path.is_file():
        name = path.name.lower()
        if any(name.endswith(s) for s in JSONL_SUFFIXES):
            rows = read_jsonl(path)
        elif path.suffix.lower() in DELIMITED_FORMATS:
            rows = read_delimited(path)
        elif path.suffix.lower() in DATASETS_FORMATS:
            rows = read_with_datasets(path)
        else:
            raise ArrError(f"{path}: unsupported training data format; use .jsonl(.gz), .json, .csv, .tsv or .parquet")
        return rows, sha256_file(path)
    if path.exists() or "/" not in source or source.startswith((".", "/", "~")):
        raise ArrError(f"{source} is not a data file (and not a Hugging Face dataset id)")
    return _hub_rows(source), hashlib.sha256(f"hub:{source}".encode()).hexdigest()


def row_text(row: Row, key: str) -> str:
    """A non-empty string field of a training row, or a one-line error naming file and line."""
    payload = row.fields or {}
    if key not in payload or payload[key] is None:
        raise ArrError(f"{row.location}: missing field {key!r}")
    value = payload[key]
    if not isinstance(value, str):
        raise ArrError(f"{row.location}: field {key!r} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ArrError(f"{row.location}: field {key!r} is empty")
    return value


def checked_rows(source: str, limit: int | None) -> tuple[list[Row], str]:
    """The first `limit` rows of a training file or dataset (a malformed one is an error), and its fingerprint."""
    rows, fingerprint = read_rows(source)
    checked = []
    for row in rows:
        if row.problem:
            raise ArrError(f"{row.location}: {row.problem}")
        checked.append(row)
        if limit is not None and len(checked) == limit:
            break
    if not checked:
        raise ArrError(f"{source} holds no rows")
    suffix = "" if limit is None else f":first-{limit}"
    return checked, fingerprint + suffix


def load_compression_data(source: str, fields: FieldMap, limit: int | None = None) -> tuple[list[CompressionExample], str]:
    rows, fingerprint = checked_rows(source, limit)
    return [CompressionExample(row_text(r, fields.context), row_text(r, fields.instruction), row_text(r, fields.output)) for r in rows], fingerprint


def _negatives(row: Row, key: str, wanted: int) -> list[str]:
    payload = row.fields or {}
    value = payload.get(key)
    if value is None:
        raise ArrError(f"{row.location}: missing field {key!r}")
    negs: Any = [value] if isinstance(value, str) else value
    if not isinstance(negs, list) or not all(isinstance(n, str) for n in negs):
        raise ArrError(f"{row.location}: field {key!r} must be a string or a list of strings")
    if len(negs) < wanted:
        raise ArrError(f"{row.location}: {len(negs)} negatives, but {wanted} are asked for (--num-negatives)")
    if any(not n.strip() for n in negs[:wanted]):
        raise ArrError(f"{row.location}: field {key!r} holds an empty negative")
    return negs[:wanted]


def load_triplets(source: str, fields: FieldMap, num_negatives: int, limit: int | None = None) -> tuple[list[Triplet], str]:
    rows, fingerprint = checked_rows(source, limit)
    triplets = [Triplet(row_text(r, fields.query), row_text(r, fields.pos), _negatives(r, fields.neg, num_negatives)) for r in rows]
    return triplets, f"{fingerprint}:neg{num_negatives}"
