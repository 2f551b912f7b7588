"""A trained model as one self-describing folder, for sharing and for shipping built-ins:

    entry.json   the registry record (prompts, k, pooling, provenance, weights hash)
    weights/     what `weights` names: a LoRA adapter or full weights, plus the compress-token rows

`arr models export` writes one (see `arretrieve.modeling.export`), `arr models import` registers one,
and the built-in default model ships as one inside the package.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ArrError
from .model_entry import ModelEntry

ENTRY_FILE = "entry.json"
WEIGHTS_DIR = "weights"


def read_model_folder(folder: Path, weights_path: str | None = None, name: str | None = None,
                      builtin: bool = False) -> ModelEntry:
    """The entry a model folder describes; its weights are the folder's `weights/` unless
    `weights_path` says where they are found (a `package:` path for built-ins)."""
    path = folder / ENTRY_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArrError(f"{folder} is not an exported model folder: it has no {ENTRY_FILE}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ArrError(f"cannot read {path}: {exc}") from None
    if not isinstance(record, dict):
        raise ArrError(f"{path}: a model entry must be a JSON object")
    if not (folder / WEIGHTS_DIR).is_dir() and weights_path is None:
        raise ArrError(f"{folder} has no {WEIGHTS_DIR}/ folder")
    location = weights_path or str((folder / WEIGHTS_DIR).resolve())
    return ModelEntry.from_dict({**record, "name": name or record.get("name"), "weights_path": location,
                                 "builtin": builtin}, source=str(path))
