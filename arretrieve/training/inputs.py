"""What a training run reads and checks before torch loads: the base entry, the stages, each
stage's data, the evaluation and probe sets. `arr train` calls it first, so a missing or malformed
file is refused in well under a second, and hands the result to `train`, which reads nothing twice."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace

from ..errors import ArrError
from ..evaluation.beir_data import BeirDataset, load_dataset
from ..registry import ModelEntry, Registry
from ..registry.new_entry import new_entry
from .config import TrainConfig
from .data import load_compression_data, load_triplets
from .objectives import Stage


@dataclass
class TrainingInputs:
    base: ModelEntry  # with the config's prompts in place of its own
    stages: tuple[Stage, ...]  # those the run trains, in order
    data: dict[str, tuple]  # (examples, fingerprint) of each stage's data, by its `Stage.data`
    eval_set: BeirDataset | None
    probe_set: BeirDataset | None


def is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate (or the only process): it alone writes run files and registers."""
    return int(os.environ.get("RANK", "0")) == 0


def read_training_inputs(config: TrainConfig, registry: Registry) -> TrainingInputs:
    """Every check that needs no model, and every file the run trains or evaluates on, read."""
    if is_main_process() and config.name in registry.names() and not (config.overwrite or config.resume):
        raise ArrError(f"a model named {config.name!r} is already registered; choose another --name or pass --overwrite")
    base = base_entry(config, registry)
    stages = config.stages()
    if config.report_to != "none" and importlib.util.find_spec(config.report_to) is None:
        raise ArrError(f"--report-to {config.report_to} needs the {config.report_to} package: pip install {config.report_to}")
    for stage in stages:
        if not getattr(config, f"{stage.data}_data"):
            raise ArrError(f"{stage.title} needs --{stage.data}-data")
    data = {stage.data: _stage_data(stage, config) for stage in stages}
    eval_set = load_dataset(config.eval_data, config.eval_split) if config.eval_data else None
    probe_set = load_dataset(config.probe_data, config.probe_split) if config.probe_data else None
    return TrainingInputs(base, stages, data, eval_set, probe_set)


def base_entry(config: TrainConfig, registry: Registry) -> ModelEntry:
    """The entry training starts from (a registry name, or a base source registered on the fly),
    with the prompts the config sets in place of its own."""
    if config.base in registry.names():
        entry = registry.get(config.base)
    else:
        entry = new_entry(config.name, base=config.base, num_compress_tokens=config.num_compress_tokens or 5,
                          max_length=config.max_length)
    if not config.prompts:
        return entry
    try:
        return replace(entry, prompts={**entry.prompts, **config.prompts})
    except ArrError as exc:
        raise ArrError(f"prompts setting: {exc}") from None


def _stage_data(stage: Stage, config: TrainConfig) -> tuple:
    """(examples, fingerprint) of the stage's data file."""
    if stage.data == "compression":
        return load_compression_data(config.compression_data, config.fields, config.compress.examples)
    return load_triplets(config.alignment_data, config.fields, config.num_negatives, config.align.examples)
