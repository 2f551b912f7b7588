"""Row readers per input format, each row tagged with where it came from (file and line or row).

JSON lines and CSV/TSV are read here, line by line in binary, so a malformed line, a wrong column
count or bad UTF-8 is reported with its exact line number, and every cell is text exactly as written
(no "NA"/"null" guessing); JSON and Parquet files are read with `datasets` (streaming). A UTF-8 byte
order mark at the start of a file is accepted.
"""

from __future__ import annotations

import csv
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import ArrError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
DELIMITED_FORMATS = {".csv": ",", ".tsv": "\t"}
DATASETS_FORMATS = {".json": "json", ".parquet": "parquet"}
BOM = "\ufeff"
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
        yield from _jsonl_rows(path, handle)


def _jsonl_rows(path: Path, handle) -> Iterator[Row]:
    line_no = 0
    try:
        for line_no, raw in enumerate(handle, start=1):
            location = f"{path}:{line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Row(location, None, "not valid UTF-8")
                continue
            if line_no == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
            except json.JSONDecodeError as exc:
                yield Row(location, None, f"malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            if not isinstance(payload, dict):
                yield Row(location, None, "expected a JSON object")
                continue
            yield Row(location, payload)
    except (EOFError, OSError, zlib.error) as exc:  # a truncated or damaged .gz
        raise ArrError(f"{path}: cannot be read past line {line_no} ({exc})") from None


def read_delimited(path: Path) -> Iterator[Row]:
    """CSV/TSV with a header line: every cell a string exactly as written; a row with another
    number of cells than the header is a problem of its line, never shifted into other columns."""
    delimiter = DELIMITED_FORMATS[_suffix(path)]
    bad_lines: set[int] = set()
    line_no = 0

    def lines() -> Iterator[str]:
        nonlocal line_no
        with open(path, "rb") as handle:
            for line_no, raw in enumerate(handle, start=1):  # noqa: B007 - read by the reader below
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    bad_lines.add(line_no)
                    text = "\n"
                yield text.removeprefix(BOM) if line_no == 1 else text

    try:
        reader = csv.reader(lines(), delimiter=delimiter, strict=True)
        header, start = None, 1
        for cells in reader:  # a record may span lines (quoted newlines): it is named by its first
            first_line, start = start, line_no + 1
            location = f"{path} line {first_line}"
            if first_line in bad_lines:
                yield Row(location, None, "not valid UTF-8")
                continue
            if not cells:
                continue
            if header is None:
                header = cells
                if len(set(header)) != len(header) or not all(h.strip() for h in header):
                    raise ArrError(f"{location}: the header needs distinct, non-empty column names")
                continue
            if len(cells) != len(header):
                yield Row(location, None, f"expected {len(header)} columns ({', '.join(header)}), found {len(cells)}")
                continue
            yield Row(location, dict(zip(header, cells)))
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror}") from None
    except csv.Error as exc:
        raise ArrError(f"{path} line {line_no}: malformed {'TSV' if delimiter == chr(9) else 'CSV'} ({exc})") from None
    if header is None:
        raise ArrError(f"{path} has no header line")


def datasets_load():
    """`datasets.load_dataset`, an optional dependency (the `hf` extra): for .json/.parquet files and
    Hub dataset ids."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise ArrError("reading .json and .parquet files and Hugging Face dataset ids needs datasets: "
                       "pip install 'arretrieve[hf]'") from None
    return load_dataset


def read_with_datasets(path: Path) -> Iterator[Row]:
    load_dataset = datasets_load()

    builder = DATASETS_FORMATS[_suffix(path)]
    try:
        dataset = load_dataset(builder, data_files=str(path), split="train", streaming=True)
        for number, payload in enumerate(dataset, start=1):
            yield Row(f"{path} row {number}", dict(payload))
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
        if _suffix(path) not in JSONL_SUFFIXES + tuple(DELIMITED_FORMATS) + tuple(DATASETS_FORMATS):
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
    elif _suffix(source) in DELIMITED_FORMATS:
        yield from read_delimited(source)
    else:
        yield from read_with_datasets(source)
