"""Write a registered trained model as a self-describing folder (format: `registry.model_folder`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import ArrError
from ..hashing import sha256_tree
from ..home import write_json_atomic
from ..registry import Registry
from ..registry.model_entry import ModelEntry
from ..registry.model_folder import ENTRY_FILE, WEIGHTS_DIR
from .loading import weights_folder


def export_model(entry: ModelEntry, folder: Path, name: str | None = None, half: bool = True,
                 registry: Registry | None = None) -> ModelEntry:
    """Copy `entry`'s trained weights (fp32 tensors stored as fp16 when `half`) and its record into
    `folder`; returns the entry the folder describes. fp16 weights give slightly different vectors,
    so they get their own hash and fingerprint: indexes built with the original are not reused.
    With `registry`, the provenance of the trained entries it was trained from (a stage-1 model,
    say) is copied too, as those entries will not exist where the folder goes."""
    if entry.weights == "base":
        raise ArrError(f"{entry.name!r} is an untrained base: it has no trained weights to export")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArrError(f"{folder} already exists and is not an empty folder")
    source = weights_folder(entry)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    weights = partial / WEIGHTS_DIR
    weights.mkdir(parents=True)
    for path in sorted(source.iterdir()):
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
    exported = replace(entry, name=name or entry.name, weights_sha256=sha256_tree(weights), builtin=False,
                       provenance={**entry.provenance, "lineage": _lineage(entry, registry),
                                   "exported": {"from": entry.name, "fingerprint": entry.fingerprint,
                                                "tensors": "float16" if half else "as trained"}})
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
    half = {key: (t.to(torch.float16) if t.dtype == torch.float32 else t).contiguous() for key, t in tensors.items()}
    save_file(half, str(target), metadata=metadata)
