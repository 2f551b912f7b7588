"""Row readers per input format, each row tagged with where it came from (file and line or row).

JSON lines are read here, line by line in binary, so a malformed line or bad UTF-8 is reported with
its exact line number; JSON, CSV/TSV and Parquet files are read with `datasets` (streaming).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import ArrError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
DATASETS_FORMATS = {".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
TEXT_SUFFIXES = (".txt", ".md")


@dataclass(frozen=True)
class Row:
    """A parsed row, or the reason it could not be parsed (`problem`)."""

    location: str
    fields: dict[str, Any] | None
    problem: str | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".jsonl.gz" if name.endswith(".jsonl.gz") else path.suffix.lower()


def read_jsonl(path: Path) -> Iterator[Row]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        handle = opener(path, "rb")
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            location = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Row(location, None, "not valid UTF-8")
                continue
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(location, None, f"malformed JSON ({exc.msg})")
                continue
            if not isinstance(payload, dict):
                yield Row(location, None, "expected a JSON object")
                continue
            yield Row(location, payload)


def read_with_datasets(path: Path) -> Iterator[Row]:
    from datasets import load_dataset

    builder = DATASETS_FORMATS[_suffix(path)]
    options = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
    # CSV rows are reported by file line (the header is line 1); other formats by row number.
    first, unit = (2, "line") if builder == "csv" else (1, "row")
    try:
        dataset = load_dataset(builder, data_files=str(path), split="train", streaming=True, **options)
        for number, payload in enumerate(dataset, start=first):
            yield Row(f"{path} {unit} {number}", dict(payload))
    except ArrError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets/pyarrow raise many types for bad files
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ArrError(f"{path}: cannot be read as {builder} ({message})") from None


def read_text_folder(folder: Path) -> Iterator[Row]:
    """One row per .txt/.md file: id = path relative to the folder, text = its contents."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES):
        location = str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            yield Row(location, None, "not valid UTF-8")
            continue
        yield Row(location, {"_id": path.relative_to(folder).as_posix(), "title": "", "text": text})


def corpus_files(path: Path) -> list[Path]:
    """The files a corpus path stands for (BEIR folder, single file, or folder of text files)."""
    if path.is_file():
        if _suffix(path) not in JSONL_SUFFIXES + tuple(DATASETS_FORMATS):
            raise ArrError(
                f"{path}: unsupported corpus format; use .jsonl(.gz), .json, .csv, .tsv, .parquet, "
                "a BEIR folder, or a folder of .txt/.md files"
            )
        return [path]
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return [path / name]
        texts = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if texts:
            return texts
        raise ArrError(f"{path} has no corpus.jsonl and no .txt/.md files")
    raise ArrError(f"{path} does not exist")


def read_rows(path: Path) -> Iterator[Row]:
    if path.is_dir() and corpus_files(path)[0].suffix.lower() in TEXT_SUFFIXES:
        yield from read_text_folder(path)
        return
    source = corpus_files(path)[0]
    if _suffix(source) in JSONL_SUFFIXES:
        yield from read_jsonl(source)
    else:
        yield from read_with_datasets(source)
