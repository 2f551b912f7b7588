"""Every way a registry model leaves the toolkit, in one place above registry/ and modeling/:

    arretrieve             entry.json + weights/ for `arr models import` (fp16 by default; `low_rank`
                           writes fully fine-tuned weights as a LoRA adapter), arretrieve_folder.py
    sentence-transformers  a folder `SentenceTransformer(folder)` loads, sentence_transformers.py

`export_model` checks the options against the format and writes the folder whole or not at all;
the CLI only calls it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ArrError
from ..registry import ModelEntry, Registry

FORMATS = ("arretrieve", "sentence-transformers")


@dataclass
class Exported:
    folder: Path
    fingerprint: str  # of the vectors the folder gives
    name: str | None = None  # the model's name inside an arretrieve folder
    low_rank: dict | None = None  # what a low-rank export kept ({"rank", "kept", ...})

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


def export_model(entry: ModelEntry, folder: Path, format: str = "arretrieve", *, name: str | None = None,
                 half: bool | None = None, low_rank: int | None = None, registry: Registry | None = None) -> Exported:
    """Write `entry` as one self-describing folder of `format`. `half` stores fp32 tensors as fp16
    (default: yes for arretrieve folders, no for sentence-transformers); `name` renames the model
    inside an arretrieve folder; `registry` supplies the provenance of the entries it was trained from."""
    if format == "arretrieve":
        from .arretrieve_folder import export_arretrieve_folder

        exported = export_arretrieve_folder(entry, folder, name=name, half=True if half is None else half,
                                            registry=registry, low_rank=low_rank)
        return Exported(folder, exported.fingerprint, exported.name, exported.provenance["exported"].get("low_rank"))
    if format == "sentence-transformers":
        if name is not None:
            raise ArrError("--name names the model inside an arretrieve folder; a sentence-transformers folder is "
                           "named by its path")
        if low_rank is not None:
            raise ArrError("--low-rank writes an arretrieve adapter folder; export the low-rank model first, import "
                           "it, then export that for sentence-transformers")
        from .sentence_transformers import export_sentence_transformers

        export_sentence_transformers(entry, folder, half=bool(half))
        return Exported(folder, entry.fingerprint)
    raise ArrError(f"unknown --format {format!r}; use {' or '.join(FORMATS)}")
