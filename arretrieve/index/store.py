"""The folder of built indexes (`./indexes` by default, `ARR_INDEXES` or --index-dir to change it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ArrError
from ..registry.model_entry import validate_name
from .manifest import MANIFEST_FILE


def default_index_root() -> Path:
    return Path(os.environ.get("ARR_INDEXES", "indexes"))


class IndexStore:
    def __init__(self, root: Path | None = None):
        self.root = root or default_index_root()

    def path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST_FILE).is_file())

    def resolve(self, name: str | None) -> Path:
        """The named index, or the only one there is."""
        if name:
            folder = self.path(name)
            if not (folder / MANIFEST_FILE).is_file():
                known = ", ".join(self.names()) or "none"
                raise ArrError(f"no index named {name!r} in {self.root} (indexes: {known})")
            return folder
        names = self.names()
        if not names:
            raise ArrError(f"no index in {self.root}; build one with `arr index CORPUS`")
        if len(names) > 1:
            raise ArrError(f"{len(names)} indexes in {self.root} ({', '.join(names)}); choose one with --index")
        return self.root / names[0]

    def remove(self, name: str) -> None:
        shutil.rmtree(self.resolve(name))
