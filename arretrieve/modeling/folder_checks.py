"""What a model folder must be before anything loads it: checked at `arr models import` and again at
every load, from file headers only (no torch, no tensor data read).

- no file in it is a link that leads out of the folder (a weight "file" pointing at /etc/...), unless
  it is a base the user named, whose links must still end in regular files;
- every JSON file is UTF-8, parses, nests sanely and stays under a size cap;
- every safetensors file's header is consistent with the file: its length fits, each tensor's byte
  range matches its dtype and shape, the ranges neither overlap nor leave gaps, and they cover the
  data exactly (what safetensors itself demands, checked before it maps the file);
- the compress-token rows have the entry's count and width, a LoRA adapter's matrices its rank.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from ..errors import ArrError

MAX_JSON_BYTES = 1 << 20  # config, adapter, entry and tokenizer settings are kilobytes
MAX_VOCABULARY_JSON_BYTES = 256 << 20  # tokenizer.json / vocab.json of large vocabularies
VOCABULARY_FILES = {"tokenizer.json", "vocab.json"}
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit
MAX_NESTING = 64
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def check_model_folder(folder: Path, num_compress_tokens: int | None = None, *, links_out: bool = False) -> None:
    """Refuse, in one line, a folder whose files would crash, mislead or escape a loader.
    `links_out` allows links that leave the folder (a base the user names, such as a Hugging Face
    cache snapshot whose files link to its blobs); they must still lead to regular files."""
    if not links_out:
        refuse_links_out(folder)
    for path in sorted(Path(os.path.abspath(folder)).rglob("*")):
        if path.is_dir():
            continue
        if not path.is_file():
            raise ArrError(f"{path} is not a regular file (a device, socket or pipe has no place in a model folder)")
        if path.suffix == ".json":
            read_json_file(path)
        elif path.suffix == ".safetensors":
            tensors = safetensors_header(path)
            if path.name == "compress_embeddings.safetensors":
                _check_compress_rows(path, tensors, num_compress_tokens)
            elif path.name == "adapter_model.safetensors":
                _check_adapter(path, tensors)


def refuse_links_out(folder: Path) -> None:
    """No file or folder below `folder` may be a link that leads out of it (checked before anything
    reads or hashes the files: a link to /dev/zero would never finish)."""
    root = Path(os.path.abspath(folder))
    inside = os.path.realpath(root)
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(inside):
                raise ArrError(f"{path} is a link to {target}, outside the model folder {root}; copy the file in instead")


def read_json_file(path: Path, max_bytes: int | None = None) -> object:
    """A JSON file's value, or one line saying why it cannot be one (size, encoding, syntax, depth)."""
    cap = max_bytes or (MAX_VOCABULARY_JSON_BYTES if path.name in VOCABULARY_FILES else MAX_JSON_BYTES)
    try:
        if not path.is_file():
            raise ArrError(f"{path} is not a regular file")
        with open(path, "rb") as handle:
            data = handle.read(cap + 1)  # never more, whatever the file claims to be
        if len(data) > cap:
            raise ArrError(f"{path} is more than {cap / 2**20:.0f} MiB, more than a {path.name} can be")
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ArrError(f"{path} is not UTF-8 text (byte {exc.start}); it is damaged or not a JSON file") from None
    except RecursionError:
        raise ArrError(f"{path} nests deeper than any model file does; refused") from None
    except ValueError as exc:
        raise ArrError(f"{path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror or exc}") from None


def safetensors_header(path: Path) -> dict[str, dict]:
    """The tensors a safetensors file declares ({name: {dtype, shape, data_offsets}}), refused in one
    line unless the header and the file agree byte for byte."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ArrError(f"{path} is too short to be a safetensors file ({size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise ArrError(f"{path}: its header claims {length} bytes, the file holds {size - 8} after the length; "
                               "it is truncated or damaged")
            raw = handle.read(length)
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArrError(f"{path}: its header is not the JSON a safetensors file starts with; it is damaged") from None
    if not isinstance(header, dict):
        raise ArrError(f"{path}: its header is not a JSON object; it is damaged")
    header.pop("__metadata__", None)
    data_bytes, ranges = size - 8 - length, []
    for name, info in header.items():
        problem = _tensor_problem(info, data_bytes)
        if problem:
            raise ArrError(f"{path}: tensor {name!r} {problem}; the file is damaged")
        ranges.append((*info["data_offsets"], name))
    position = 0
    for start, end, name in sorted(ranges):
        if start != position:
            what = "overlaps the tensor before it" if start < position else f"leaves {start - position} bytes unused before it"
            raise ArrError(f"{path}: tensor {name!r} {what}; the file is damaged")
        position = end
    if position != data_bytes:
        raise ArrError(f"{path}: its tensors cover {position} of its {data_bytes} data bytes; the file is damaged")
    return header


def _tensor_problem(info: object, data_bytes: int) -> str | None:
    if not isinstance(info, dict) or info.get("dtype") not in DTYPE_BYTES:
        return "has no known dtype"
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return "has no valid shape"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_bytes):
        return f"lies outside the file's {data_bytes} data bytes"
    expected = math.prod(shape) * DTYPE_BYTES[info["dtype"]]
    if offsets[1] - offsets[0] != expected:
        return f"of shape {shape} needs {expected} bytes but is given {offsets[1] - offsets[0]}"
    return None


def _check_compress_rows(path: Path, tensors: dict, count: int | None) -> None:
    rows = tensors.get("compress_embeddings")
    if rows is None:
        raise ArrError(f"{path} has no compress_embeddings tensor")
    shape = rows["shape"]
    if len(shape) != 2 or (count is not None and shape[0] != count):
        raise ArrError(f"{path}: compress_embeddings has shape {shape}, the model entry says "
                       f"[{count if count is not None else 'k'}, hidden size]")


def _check_adapter(path: Path, tensors: dict) -> None:
    config = path.parent / "adapter_config.json"
    settings = read_json_file(config) if config.is_file() else {}
    rank = settings.get("r") if isinstance(settings, dict) else None
    if type(rank) is not int or settings.get("rank_pattern"):  # per-module ranks: no one rank to check
        return
    for name, info in tensors.items():
        shape = info["shape"]
        bad = len(shape) == 2 and (("lora_A" in name and shape[0] != rank) or ("lora_B" in name and shape[1] != rank))
        if bad:
            raise ArrError(f"{path}: {name} has shape {shape}, not rank {rank} as {config.name} says")
