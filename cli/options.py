"""Options several commands share, declared once (Typer reads the same OptionInfo wherever it is a
default), and the flags of a settings dataclass derived from its fields (`dataclass_options`)."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from typing import List, Optional

import typer

Device = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
Dtype = typer.Option(None, "--dtype", help="Override the model's dtype: float32, bfloat16 or float16.")
IndexDir = typer.Option(None, "--index-dir", help="Where indexes live (default: $ARR_INDEXES, else ./indexes if present, "
                                                   "else $ARR_HOME/indexes).")
BatchSize = typer.Option(16, "--batch-size", min=1, help="Texts per forward pass (halved automatically on out-of-memory).")


def _flag_type(annotation) -> type:
    """The Typer type of a field's annotation: `X | None` is X; `list[str]` is List[str]."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is list:
        return List[typing.get_args(annotation)[0]]  # noqa: UP006 - Typer needs typing.List
    return annotation


def dataclass_options(cls, help_suffix: str = "", panels: dict[str, str] | None = None,
                      panel: str | None = None) -> list[inspect.Parameter]:
    """One keyword option per field of `cls` declared with `setting(...)` (its help, its flag
    spelling), defaulting to None so the caller knows what was given; the field's default is shown
    in the help where it says something (not for booleans, None or a suffixed help). `panels`
    (field → help panel) and `panel` (the rest) group them in `--help`."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        hidden = help_suffix or default in (None, dataclasses.MISSING) or isinstance(default, bool)
        shown = "" if hidden else f" (default: {default})"
        flags = [f.metadata["flag"]] if f.metadata.get("flag") else []
        option = typer.Option(None, *flags, help=f.metadata.get("help", "") + help_suffix + shown, show_default=False,
                              rich_help_panel=(panels or {}).get(f.name, panel))
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[_flag_type(hints[f.name])]))
    return params


def given(values: dict, cls) -> dict:
    """Pop `cls`'s fields out of a command's arguments, keeping those the user gave."""
    return {f.name: value for f in dataclasses.fields(cls) if (value := values.pop(f.name, None)) is not None}
