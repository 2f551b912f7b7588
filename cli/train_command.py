"""`arr train`: AutoRegEmbed stage 1 + stage 2 (or the InfoNCE baseline); registers the result.

Its flags are derived from the fields of `TrainConfig` and `StageSettings` (help texts included), so
a setting is declared once, in arretrieve/training/config.py. A stage setting's flag (`--lr`) sets
both stages; a config file can set each stage apart (`[compress]`, `[align]`).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Optional

import typer

from .options import dataclass_options
from .output import console


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
    return inspect.Signature(dataclass_options(TrainConfig) + dataclass_options(StageSettings, " (both stages)") + [config])


train.__signature__ = _signature()
