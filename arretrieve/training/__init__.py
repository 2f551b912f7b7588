"""`arr train`: AutoRegEmbed's two stages and the InfoNCE baseline, on HF Trainer and peft."""

from .config import PRESETS, TrainConfig, build_config, read_config_file
from .run import TrainResult, train

__all__ = ["PRESETS", "TrainConfig", "TrainResult", "build_config", "read_config_file", "train"]
