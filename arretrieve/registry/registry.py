"""The model registry: built-in entries plus user entries stored as JSON under the toolkit home."""

from __future__ import annotations

import difflib

import json
from pathlib import Path

from ..errors import ArrError
from ..home import arr_home, write_json_atomic
from .builtin_models import BUILTIN_ENTRIES, DEFAULT_MODEL
from .model_entry import ModelEntry, validate_name


class Registry:
    """Looks up, adds and removes model entries; remembers the default model."""

    def __init__(self, home: Path | None = None):
        self.home = home or arr_home()
        self.entries_dir = self.home / "models"
        self.settings_path = self.home / "settings.json"
        self._builtins = {entry.name: entry for entry in BUILTIN_ENTRIES}

    def weights_dir(self, name: str) -> Path:
        """Where the trained weights of the model `name` are kept for its entry (`arr train` copies
        them here, so a run folder can be removed)."""
        return self.entries_dir / "weights" / validate_name(name)

    def _entry_path(self, name: str) -> Path:
        return self.entries_dir / f"{validate_name(name)}.json"

    def _load_user(self, path: Path) -> ModelEntry:
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise ArrError(f"cannot read registry entry {path}: {exc}") from None
        entry = ModelEntry.from_dict(payload, source=str(path))
        if entry.name != path.stem:
            raise ArrError(f"registry entry {path} names itself {entry.name!r}; rename the file or fix the name")
        return entry

    def names(self) -> list[str]:
        user = sorted(p.stem for p in self.entries_dir.glob("*.json")) if self.entries_dir.is_dir() else []
        return list(self._builtins) + [n for n in user if n not in self._builtins]

    def list(self) -> list[ModelEntry]:
        """Every entry that can be read (`scan` also says which cannot)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[ModelEntry], list[tuple[str, str]]]:
        """(the entries, (name, why) for each user entry file that cannot be read): one damaged file
        hides no other model, and `remove` still deletes it."""
        entries, broken = [], []
        for name in self.names():
            try:
                entries.append(self.get(name))
            except ArrError as exc:
                broken.append((name, str(exc)))
        return entries, broken

    def get(self, name: str) -> ModelEntry:
        if name in self._builtins:
            return self._builtins[name]
        path = self._entry_path(name)
        if not path.is_file():
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ArrError(f"no model named {name!r} in the registry; {hint}see `arr models list`")
        return self._load_user(path)

    def add(self, entry: ModelEntry, overwrite: bool = False) -> Path:
        if entry.name in self._builtins:
            raise ArrError(f"{entry.name!r} is a built-in model name; choose another name")
        path = self._entry_path(entry.name)
        exists = f"a model named {entry.name!r} already exists; remove it first or pass --overwrite"
        if path.exists() and not overwrite:
            raise ArrError(exists)
        payload = entry.to_dict()
        payload.pop("builtin")
        payload["fingerprint"] = entry.fingerprint
        try:  # without --overwrite, a concurrent add of the same name makes exactly one of them fail
            write_json_atomic(path, payload, replace=overwrite)
        except FileExistsError:
            raise ArrError(exists) from None
        return path

    def remove(self, name: str) -> None:
        if name in self._builtins:
            raise ArrError(f"{name!r} is built in and cannot be removed")
        path = self._entry_path(name)
        if not path.is_file():
            raise ArrError(f"no model named {name!r} in the registry")
        owned = self.weights_dir(name)
        path.unlink()
        if owned.is_dir():  # weights the toolkit keeps for this entry alone
            import shutil

            shutil.rmtree(owned)
        if self._settings().get("default_model") == name:
            self._write_settings({k: v for k, v in self._settings().items() if k != "default_model"})

    def _settings(self) -> dict:
        if not self.settings_path.is_file():
            return {}
        try:
            return json.loads(self.settings_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # ValueError: bad JSON or bad UTF-8
            raise ArrError(f"cannot read {self.settings_path}: {exc}") from None

    def _write_settings(self, settings: dict) -> None:
        write_json_atomic(self.settings_path, settings)

    @property
    def default_name(self) -> str:
        return self._settings().get("default_model", DEFAULT_MODEL)

    def set_default(self, name: str) -> None:
        self.get(name)  # must exist
        self._write_settings({**self._settings(), "default_model": name})

    def resolve(self, name: str | None) -> ModelEntry:
        """The named entry, or the default one when no name is given."""
        return self.get(name or self.default_name)
