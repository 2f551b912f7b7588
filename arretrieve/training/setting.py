"""The one way a training setting is declared: a dataclass field carrying what `arr train` shows for it."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(default: Any = None, help: str = "", *, factory: Any = None, flag: str | None = None, cli: bool = True):
    """A dataclass field with its help text, and the flag spelling where it is not
    `--name-with-dashes` (`flag`); `cli=False` keeps it to config files."""
    metadata = {"help": help, "flag": flag, "cli": cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)
