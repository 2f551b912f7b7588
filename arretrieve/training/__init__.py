"""`arr train`: AutoRegEmbed's two stages and the InfoNCE baseline, on HF Trainer and peft.

The settings (`config`) import without torch, so the CLI can build its flags from them; the
training code loads on first use of `train`/`TrainResult`.
"""

import importlib

from .config import PRESETS, StageSettings, TrainConfig, build_config, read_config_file


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        return getattr(importlib.import_module(".run", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PRESETS", "StageSettings", "TrainConfig", "TrainResult", "build_config", "read_config_file", "train"]
