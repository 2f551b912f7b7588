"""`arr train`: AutoRegEmbed stage 1 + stage 2 (or the InfoNCE baseline); registers the result.

Its flags are derived from the fields of `TrainConfig` and `StageSettings` (help texts included), so
a setting is declared once, in arretrieve/training/config.py. A stage setting's flag (`--lr`) sets
both stages; a config file can set each stage apart (`[compress]`, `[align]`).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import List, Optional

import typer

from .output import console


def _flag_type(annotation) -> type:
    """The Typer type of a field's annotation: `X | None` is X; `list[str]` is List[str]."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is list:
        return List[typing.get_args(annotation)[0]]  # noqa: UP006 - Typer needs typing.List
    return annotation


def _options(cls, help_suffix: str = "") -> list[inspect.Parameter]:
    hints = typing.get_type_hints(cls)
    params = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        hidden = help_suffix or default in (None, dataclasses.MISSING) or isinstance(default, bool)
        shown = "" if hidden else f" (default: {default})"  # a stage default differs by stage
        flags = [f.metadata["flag"]] if f.metadata.get("flag") else []
        option = typer.Option(None, *flags, help=f.metadata.get("help", "") + help_suffix + shown, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[_flag_type(hints[f.name])]))
    return params


def _stage_flag_names() -> list[str]:
    from arretrieve.training.config import StageSettings

    return [f.name for f in dataclasses.fields(StageSettings)]


def train(**values) -> None:
    """Train an AutoRegEmbed model (or the contrastive baseline) and add it to the registry.

    Settings not given as flags come from --config, then --preset, then the defaults.
    """
    from arretrieve.training import build_config, read_config_file, train as run_training

    config_file = values.pop("config")
    stage_values = {name: values.pop(name) for name in _stage_flag_names()}
    flags = {key: (str(value) if isinstance(value, Path) else value) for key, value in values.items()}
    both = {key: value for key, value in stage_values.items() if value is not None}
    if both:
        flags["compress"], flags["align"] = dict(both), dict(both)
    settings = build_config(read_config_file(config_file) if config_file else {}, flags)
    result = run_training(settings, show_progress=True)
    if not result.registered:  # a non-main torchrun process: rank 0 reports
        return
    losses = ", ".join(f"{stage} {loss:.4f}" for stage, loss in result.final_losses.items())
    console.print(f"trained {result.entry.name} ({losses}; {result.seconds.get('total', 0):.0f} s) → {result.run_dir}", highlight=False)
    console.print(f"registered {result.entry.name} (fingerprint {result.entry.fingerprint}); use it with --model {result.entry.name}", highlight=False)


def _signature() -> inspect.Signature:
    from arretrieve.training.config import StageSettings, TrainConfig  # no torch: `arr --help` stays fast

    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
        None, "--config", help="JSON/TOML/YAML file with any of the settings (flags win)."))
    return inspect.Signature(_options(TrainConfig) + _options(StageSettings, " (both stages)") + [config])


train.__signature__ = _signature()
