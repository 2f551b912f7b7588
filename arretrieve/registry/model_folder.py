"""A trained model as one self-describing folder, for sharing and for shipping built-ins:

    entry.json   the registry record (prompts, k, pooling, provenance, weights hash)
    weights/     what `weights` names: a LoRA adapter or full weights, plus the compress-token rows

`arr models export` writes one (`export_model`), `arr models import` registers one
(`import_model_folder`), and the built-in default model ships as one inside the package. A trained
model's entry is made in one place, `trained_entry`, and its weights are found by `weights_folder`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArrError
from ..hashing import sha256_tree
from ..home import write_json_atomic
from ..modeling.backbone import PACKAGE_SCHEME, locate_package_file, verified_sha256
from .model_entry import ModelEntry

if TYPE_CHECKING:
    from .registry import Registry

ENTRY_FILE = "entry.json"
WEIGHTS_DIR = "weights"
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
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArrError(f"{folder} is not an exported model folder: it has no {ENTRY_FILE}") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
        raise ArrError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict):
        raise ArrError(f"{path}: a model entry must be a JSON object")
    if not (folder / WEIGHTS_DIR).is_dir() and weights_path is None:
        raise ArrError(f"{folder} has no {WEIGHTS_DIR}/ folder")
    record = refuse_untrusted_code(record, str(path), trust_remote_code, folder / WEIGHTS_DIR)
    location = weights_path or str((folder / WEIGHTS_DIR).resolve())
    return ModelEntry.from_dict({**record, "name": name or record.get("name"), "weights_path": location,
                                 "builtin": builtin}, source=str(path))


def import_model_folder(folder: Path, name: str | None = None, trust_remote_code: bool = False) -> ModelEntry:
    """The entry of an exported folder, ready to register: its weights hashed now if the entry
    records no hash (so later loads verify them), and checked now if it does."""
    entry = read_model_folder(folder, name=name, trust_remote_code=trust_remote_code)
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
    if entry.weights_sha256 and verified_sha256(folder) != entry.weights_sha256:
        raise ArrError(f"model {entry.name!r}: the weights in {folder} changed since the entry was registered")
    return folder


def trained_entry(base: ModelEntry, *, name: str, weights: str, weights_path: Path, num_compress_tokens: int,
                  pooling: str, description: str, provenance: dict[str, Any]) -> ModelEntry:
    """The entry of a model trained from `base`: the base's source, prompts and settings, the new
    weights (hashed now) and how they were made."""
    return replace(base, name=name, kind="autoregembed", weights=weights, weights_path=str(weights_path),
                   weights_sha256=sha256_tree(weights_path), num_compress_tokens=num_compress_tokens, pooling=pooling,
                   normalize=True, description=description, provenance=provenance, builtin=False)


def export_model(entry: ModelEntry, folder: Path, name: str | None = None, half: bool = True,
                 registry: Registry | None = None, low_rank: int | None = None) -> ModelEntry:
    """Copy `entry`'s trained weights (fp32 tensors stored as fp16 when `half`) and its record into
    `folder`; returns the entry the folder describes. fp16 weights give slightly different vectors,
    so they get their own hash and fingerprint: indexes built with the original are not reused.
    With `registry`, the provenance of the trained entries it was trained from (a stage-1 model,
    say) is copied too, as those entries will not exist where the folder goes. `low_rank` writes
    fully fine-tuned weights as a LoRA adapter of that rank (`modeling/low_rank.py`): another,
    approximate model, a fraction of the size."""
    if entry.weights == "base":
        raise ArrError(f"{entry.name!r} is an untrained base: it has no trained weights to export")
    if low_rank is not None and entry.weights != "full":
        raise ArrError(f"{entry.name!r} holds {entry.weights} weights; --low-rank turns fully fine-tuned weights "
                       "into an adapter, so it applies to full weights only")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArrError(f"{folder} already exists and is not an empty folder")
    source = weights_folder(entry)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    weights = partial / WEIGHTS_DIR
    weights.mkdir(parents=True)
    low_rank_info = None
    if low_rank is not None:
        from ..modeling.low_rank import write_low_rank_adapter

        low_rank_info = write_low_rank_adapter(entry, source, weights, low_rank, half)
    for path in sorted(source.iterdir()) if low_rank is None else [source / COMPRESS_FILE]:
        if path.name == "README.md":
            continue  # peft's generated model-card template: boilerplate naming a path on the training machine
        if path.is_dir():
            raise ArrError(f"{source} holds a folder ({path.name}); only flat weight folders can be exported")
        if path.suffix == ".safetensors" and half:
            _save_half(path, weights / path.name)
        elif path.name == "adapter_config.json":
            # The adapter names its base by a path on the training machine; the entry's base is what loads it.
            config = json.loads(path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = entry.base
            write_json_atomic(weights / path.name, config)
        else:
            shutil.copy2(path, weights / path.name)
    exported_from = {"from": entry.name, "fingerprint": entry.fingerprint, "tensors": "float16" if half else "as trained"}
    if low_rank_info:
        exported_from["low_rank"] = low_rank_info
    exported = replace(entry, name=name or entry.name, weights="adapter" if low_rank else entry.weights,
                       weights_sha256=sha256_tree(weights), builtin=False,
                       provenance={**entry.provenance, "lineage": _lineage(entry, registry), "exported": exported_from})
    record = exported.to_dict()
    for key in ("builtin", "weights_path"):
        record.pop(key)
    write_json_atomic(partial / ENTRY_FILE, record)
    if folder.exists():
        folder.rmdir()
    partial.rename(folder)
    return replace(exported, weights_path=str((folder / WEIGHTS_DIR).resolve()))


def _lineage(entry: ModelEntry, registry: Registry | None) -> list[dict]:
    """Provenance of each trained ancestor, nearest first (an imported ancestor brings its own)."""
    if "lineage" in entry.provenance:
        return entry.provenance["lineage"]
    chain, name = [], entry.provenance.get("base_entry")
    while registry is not None and name in registry.names():
        ancestor = registry.get(name)
        if not ancestor.provenance.get("trained_by"):
            break
        chain.append({"name": name, "fingerprint": ancestor.fingerprint,
                      **{k: v for k, v in ancestor.provenance.items() if k != "lineage"}})
        if "lineage" in ancestor.provenance:
            return chain + ancestor.provenance["lineage"]
        name = ancestor.provenance.get("base_entry")
    return chain


def _save_half(source: Path, target: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    import torch

    half = {key: (t.to(torch.float16) if t.dtype == torch.float32 else t).contiguous() for key, t in tensors.items()}
    save_file(half, str(target), metadata=metadata)
