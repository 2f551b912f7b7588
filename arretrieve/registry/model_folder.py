"""A trained model as one self-describing folder, for sharing and for shipping built-ins:

    entry.json   the registry record (prompts, k, pooling, provenance, weights hash)
    weights/     what `weights` names: a LoRA adapter or full weights, plus the compress-token rows

`arr models export` writes one (arretrieve/export/), `arr models import` registers one
(`import_model_folder`), and the built-in default model ships as one inside the package. A trained
model's entry is made in one place, `trained_entry`, and its weights are found by `weights_folder`.
No torch here: reading, checking and registering a folder never loads a model.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ArrError
from ..hashing import sha256_tree
from ..modeling.backbone import PACKAGE_SCHEME, locate_package_file, verified_sha256
from ..modeling.folder_checks import check_model_folder, read_json_file, refuse_links_out
from .model_entry import ModelEntry

ENTRY_FILE = "entry.json"
WEIGHTS_DIR = "weights"
WEIGHTS_SOURCE = "arretrieve-source.json"  # in a weights folder the registry keeps: which run made it
COMPRESS_FILE = "compress_embeddings.safetensors"  # the trained compress-token rows (and learned state scale)


def remote_code_of(folder: Path) -> list[str]:
    """What loading a folder would run: the modules its config.json's `auto_map` names."""
    config = folder / "config.json"
    try:
        auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map") or {}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted({str(v) for v in (auto_map.values() if isinstance(auto_map, dict) else [])})


def refuse_untrusted_code(record: dict, source: str, granted: bool, folder: Path | None = None) -> dict:
    """A record from a file may ask for `trust_remote_code`; only the user's flag grants it."""
    if not record.get("trust_remote_code") or granted:
        return {**record, "trust_remote_code": bool(record.get("trust_remote_code"))}
    modules = remote_code_of(folder) if folder else []
    what = f" (it would run {', '.join(modules)} from {folder})" if modules else ""
    raise ArrError(f"{source} asks to run the model's own Python code for base {record.get('base')!r}{what}; "
                   "nothing from a file grants that: pass --trust-remote-code if you trust it")


def read_model_folder(folder: Path, weights_path: str | None = None, name: str | None = None,
                      builtin: bool = False, trust_remote_code: bool = False) -> ModelEntry:
    """The entry a model folder describes; its weights are the folder's `weights/` unless
    `weights_path` says where they are found (a `package:` path for built-ins). An entry asking
    for `trust_remote_code` is refused unless the caller grants it (`trust_remote_code`)."""
    path = folder / ENTRY_FILE
    if not path.is_file():
        raise ArrError(f"{folder} is not an exported model folder: it has no {ENTRY_FILE}")
    record = read_json_file(path)
    if not isinstance(record, dict):
        raise ArrError(f"{path}: a model entry must be a JSON object")
    if not (folder / WEIGHTS_DIR).is_dir() and weights_path is None:
        raise ArrError(f"{folder} has no {WEIGHTS_DIR}/ folder")
    record = refuse_untrusted_code(record, str(path), trust_remote_code, folder / WEIGHTS_DIR)
    location = weights_path or str((folder / WEIGHTS_DIR).resolve())
    return ModelEntry.from_dict({**record, "name": name or record.get("name"), "weights_path": location,
                                 "builtin": builtin}, source=str(path))


def import_model_folder(folder: Path, name: str | None = None, trust_remote_code: bool = False) -> ModelEntry:
    """The entry of an exported folder, ready to register: its files checked (`check_model_folder`),
    its weights hashed now if the entry records no hash (so later loads verify them), and checked
    against the hash now if it does."""
    refuse_links_out(folder)
    entry = read_model_folder(folder, name=name, trust_remote_code=trust_remote_code)
    check_model_folder(folder, entry.num_compress_tokens)
    if entry.weights == "base":
        return entry
    actual = verified_sha256(Path(entry.weights_path))
    if entry.weights_sha256 and entry.weights_sha256 != actual:
        raise ArrError(f"{folder / WEIGHTS_DIR}: the weights differ from the hash {ENTRY_FILE} records "
                       f"({actual[:16]}… instead of {entry.weights_sha256[:16]}…)")
    return replace(entry, weights_sha256=actual)


def weights_folder(entry: ModelEntry) -> Path:
    """The entry's trained-weights folder, checked against the hash the entry recorded."""
    spec = entry.weights_path or ""
    folder = locate_package_file(spec) if spec.startswith(PACKAGE_SCHEME) else Path(spec).expanduser()
    if not folder.is_dir():
        raise ArrError(f"model {entry.name!r}: weights folder {folder} is missing")
    refuse_links_out(folder)
    if entry.weights_sha256 and verified_sha256(folder) != entry.weights_sha256:
        raise ArrError(f"model {entry.name!r}: the weights in {folder} changed since the entry was registered")
    check_model_folder(folder, entry.num_compress_tokens)
    return folder


def trained_entry(base: ModelEntry, *, name: str, weights: str, weights_path: Path, num_compress_tokens: int,
                  pooling: str, description: str, provenance: dict[str, Any]) -> ModelEntry:
    """The entry of a model trained from `base`: the base's source, prompts and settings, the new
    weights (hashed now) and how they were made."""
    return replace(base, name=name, kind="autoregembed", weights=weights, weights_path=str(weights_path),
                   weights_sha256=sha256_tree(weights_path), num_compress_tokens=num_compress_tokens, pooling=pooling,
                   normalize=True, description=description, provenance=provenance, builtin=False)
