"""A registry model as an arretrieve model folder (registry/model_folder.py's layout): its record and
its trained weights, stored as fp16 or as a low-rank adapter on the way."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from ..errors import ArrError
from ..hashing import sha256_tree
from ..home import write_folder_atomic, write_json_atomic
from ..registry import ModelEntry, Registry
from ..registry.model_folder import COMPRESS_FILE, ENTRY_FILE, WEIGHTS_DIR, WEIGHTS_SOURCE, weights_folder


def export_arretrieve_folder(entry: ModelEntry, folder: Path, name: str | None = None, half: bool = True,
                             registry: Registry | None = None, low_rank: int | None = None) -> ModelEntry:
    """Copy `entry`'s trained weights (fp32 tensors stored as fp16 when `half`) and its record into
    `folder`; returns the entry the folder describes. fp16 weights give slightly different vectors,
    so they get their own hash and fingerprint: indexes built with the original are not reused.
    With `registry`, the provenance of the trained entries it was trained from (a stage-1 model,
    say) is copied too, as those entries will not exist where the folder goes. `low_rank` writes
    fully fine-tuned weights as a LoRA adapter of that rank (export/low_rank.py): another,
    approximate model, a fraction of the size."""
    if entry.weights == "base":
        raise ArrError(f"{entry.name!r} is an untrained base: it has no trained weights to export")
    if low_rank is not None and entry.weights != "full":
        raise ArrError(f"{entry.name!r} holds {entry.weights} weights; --low-rank turns fully fine-tuned weights "
                       "into an adapter, so it applies to full weights only")
    source = weights_folder(entry)
    exported: list[ModelEntry] = []

    def write(staging: Path) -> None:
        weights = staging / WEIGHTS_DIR
        weights.mkdir()
        low_rank_info = _write_weights(entry, source, weights, half, low_rank)
        exported_from = {"from": entry.name, "fingerprint": entry.fingerprint, "tensors": "float16" if half else "as trained"}
        if low_rank_info:
            exported_from["low_rank"] = low_rank_info
        exported.append(replace(entry, name=name or entry.name, weights="adapter" if low_rank else entry.weights,
                                weights_sha256=sha256_tree(weights), builtin=False,
                                provenance={**entry.provenance, "lineage": _lineage(entry, registry),
                                            "exported": exported_from}))

    def record() -> dict:
        fields = exported[0].to_dict()
        for key in ("builtin", "weights_path"):
            fields.pop(key)
        return fields

    write_folder_atomic(folder, write, ENTRY_FILE, record, existing="refuse")
    return replace(exported[0], weights_path=str((folder / WEIGHTS_DIR).resolve()))


def _write_weights(entry: ModelEntry, source: Path, weights: Path, half: bool, low_rank: int | None) -> dict | None:
    low_rank_info = None
    if low_rank is not None:
        from .low_rank import write_low_rank_adapter

        low_rank_info = write_low_rank_adapter(entry, source, weights, low_rank, half)
    for path in sorted(source.iterdir()) if low_rank is None else [source / COMPRESS_FILE]:
        if path.name in ("README.md", WEIGHTS_SOURCE):
            continue  # peft's model-card template and the registry's note naming the run: paths on the training machine
        if path.is_dir():
            raise ArrError(f"{source} holds a folder ({path.name}); only flat weight folders can be exported")
        if path.suffix == ".safetensors" and half:
            save_half(path, weights / path.name)
        elif path.name == "adapter_config.json":
            # The adapter names its base by a path on the training machine; the entry's base is what loads it.
            config = json.loads(path.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = entry.base
            write_json_atomic(weights / path.name, config)
        else:
            shutil.copy2(path, weights / path.name)
    return low_rank_info


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


def save_half(source: Path, target: Path) -> None:
    """A safetensors file with its float32 tensors stored as float16 (its metadata kept)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    half = {key: (t.to(torch.float16) if t.dtype == torch.float32 else t).contiguous() for key, t in tensors.items()}
    save_file(half, str(target), metadata=metadata)
