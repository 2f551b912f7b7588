"""The folder of built indexes.

One rule, the same from any folder: `--index-dir`, else `$ARR_INDEXES`, else `./indexes` when the
current folder has one (a project's own store, as in this repository), else `$ARR_HOME/indexes`.
"""

from __future__ import annotations

import difflib

import fcntl
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ArrError
from ..home import arr_home
from ..registry.model_entry import validate_name
from .manifest import MANIFEST_FILE

log = logging.getLogger(__name__)


def default_index_root() -> tuple[Path, str]:
    """The root the rule picks, and how it was chosen (for errors that say where to point instead)."""
    if os.environ.get("ARR_INDEXES"):
        return Path(os.environ["ARR_INDEXES"]).expanduser(), "$ARR_INDEXES"
    local = Path("indexes")
    if local.is_dir():
        return local, "./indexes of the current folder"
    return arr_home() / "indexes", "$ARR_HOME/indexes, as the current folder has no ./indexes"


class IndexStore:
    def __init__(self, root: Path | None = None):
        self.root, self.chosen_by = (root, "--index-dir") if root is not None else default_index_root()

    def _looked(self) -> str:
        return f"{self.root} ({self.chosen_by}; --index-dir or $ARR_INDEXES point elsewhere)"

    def path(self, name: str) -> Path:
        return self.root / validate_name(name)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        # Hidden folders are a build's staging or a rebuild's old copy on its way out.
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and (p / MANIFEST_FILE).is_file())

    def resolve(self, name: str | None) -> Path:
        """The named index, or the only one there is."""
        if name:
            folder = self.path(name)
            if not (folder / MANIFEST_FILE).is_file():
                close = difflib.get_close_matches(name, self.names(), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                known = ", ".join(self.names()) or "none"
                raise ArrError(f"no index named {name!r} in {self._looked()}; {hint}indexes there: {known}")
            return folder
        names = self.names()
        if not names:
            raise ArrError(f"no index in {self._looked()}; build one with `arr index CORPUS`")
        if len(names) > 1:
            raise ArrError(f"{len(names)} indexes in {self.root} ({', '.join(names)}); choose one with --index")
        return self.root / names[0]

    @contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Held by whoever changes index `name` (build, --overwrite, --add, remove), from reading its
        manifest to committing the next one: a second writer waits, then sees the first one's
        result, so two writers never merge silently. An advisory lock beside the folder (the folder
        itself is swapped by a rebuild); the kernel drops it when its process dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{validate_name(name)}.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("index %r is being changed by another process; waiting for it to finish", name)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def remove(self, name: str) -> None:
        with self.writing(name):
            shutil.rmtree(self.resolve(name))
