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
    """Train a model and add it to the registry: one run from flags, or a recipe's steps.

    Your own {query, pos[, neg]} pairs: arr train --recipe continue --data pairs.jsonl --name mine.
    The shipped default's chain: arr train --recipe default --data data/debian-desc --name mine.
    One run from flags: arr train --name mine --objective contrastive --stage align --alignment-data t.jsonl.
    With --recipe, every step of a plan runs in order (run the same command again to resume); without
    it, settings not given as flags come from --config, then --preset, then the defaults.
    """
    from arretrieve.training import build_config, read_config_file  # no torch: settings are checked first

    config_file = values.pop("config")
    recipe = {key: values.pop(key) for key in ("recipe", "data", "until", "start", "scale")}
    stage_values = {name: values.pop(name) for name in _stage_flag_names()}
    flags = {key: (str(value) if isinstance(value, Path) else value) for key, value in values.items()}
    both = {key: value for key, value in stage_values.items() if value is not None}
    if both:
        flags["compress"], flags["align"] = dict(both), dict(both)
    if recipe["data"] is not None and not recipe["recipe"] and not config_file:
        # --data alone: the recipe that measures best for it, the default's chain on a data folder
        # (the Debian set), the default continued on a file of the user's own pairs.
        recipe["recipe"] = "default" if Path(recipe["data"]).is_dir() else "continue"
        console.print(f"no --recipe: running the {recipe['recipe']!r} recipe on {recipe['data']} "
                      "(`arr train --help` lists the others)", highlight=False)
    if recipe["recipe"]:
        if config_file:
            from arretrieve.errors import ArrError

            raise ArrError("--config and --recipe both say what to train; a recipe's steps carry their settings")
        return _train_recipe(recipe, {k: v for k, v in flags.items() if v is not None})
    unused = [f"--{k}" for k, v in recipe.items() if v is not None and k != "recipe"]
    if unused:
        from arretrieve.errors import ArrError

        raise ArrError(f"{', '.join(unused)} belong to --recipe")
    settings = build_config(read_config_file(config_file) if config_file else {}, flags, config_file)
    from arretrieve.registry import Registry
    from arretrieve.training.inputs import read_training_inputs  # still no torch: data is checked next

    registry = Registry()
    inputs = read_training_inputs(settings, registry)
    from arretrieve.training import train as run_training

    result = run_training(settings, registry=registry, show_progress=True, inputs=inputs)
    if not result.registered:  # a non-main torchrun process: rank 0 reports
        return
    from arretrieve.training.report import last_evaluations

    losses = ", ".join(f"{stage} {loss:.4f}" for stage, loss in result.final_losses.items())
    console.print(f"trained {result.entry.name} ({losses}; {result.seconds.get('total', 0):.0f} s)", highlight=False)
    for stage, measured in last_evaluations(result.run_dir).items():
        values = ", ".join(f"{k} {v:.4f}" for k, v in measured.items() if k != "step")
        console.print(f"  {stage}, last evaluation (step {measured['step']}): {values}", highlight=False)
    console.print(f"  run folder (metrics.jsonl, loss plots, each stage's final weights): {result.run_dir}", highlight=False)
    console.print(f"registered {result.entry.name} (fingerprint {result.entry.fingerprint}), weights in "
                  f"{result.entry.weights_path}; use it with --model {result.entry.name}", highlight=False)


def _train_recipe(recipe: dict, flags: dict) -> None:
    from arretrieve.errors import ArrError
    from arretrieve.training.recipe import load_recipe, plan_recipe, run_recipe

    if "name" not in flags:
        raise ArrError("a name for the trained model is required (--name)")
    name, base, output_dir = flags.pop("name"), flags.pop("base", None), flags.pop("output_dir", None)
    overwrite = flags.pop("overwrite", False)
    plan = plan_recipe(load_recipe(recipe["recipe"]), name, data=recipe["data"], output_dir=output_dir, base=base,
                       scale=recipe["scale"], flags=flags)
    result = run_recipe(plan, until=recipe["until"], start=recipe["start"], overwrite=overwrite, show_progress=True)
    report_recipe(result)


def report_recipe(result) -> None:
    """What a recipe's run did, where it went, and the model it registered."""
    summary = f"ran {', '.join(result.ran) or 'no step'}" + (f" (done before: {', '.join(result.skipped)})" if result.skipped else "")
    if result.entry is None:
        console.print(f"{summary}; stopped after {result.stopped_after} → {result.run_dir} (run again without --until to go on)",
                      highlight=False)
        return
    console.print(f"{summary} → {result.run_dir}", highlight=False)
    console.print(f"registered {result.entry.name} (fingerprint {result.entry.fingerprint}), weights in "
                  f"{result.entry.weights_path}; use it with --model {result.entry.name}", highlight=False)


def _signature() -> inspect.Signature:
    from arretrieve.training.config import StageSettings, TrainConfig  # no torch: `arr --help` stays fast
    from arretrieve.training.recipe import shipped_recipes

    def option(name: str, annotation, *flags: str, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[annotation],
                                 default=typer.Option(None, *flags, help=help, rich_help_panel="Recipe or settings file"))

    recipe = [
        option("recipe", str, "--recipe", help="Run a recipe, a plan of steps (a shipped name: "
               f"{', '.join(shipped_recipes())}; or a TOML file); the same command again resumes it."),
        option("data", Path, "--data", help="What a recipe reads as {data}; alone, a file of your own pairs runs the "
               "continue recipe and a data folder (the Debian set) the default one."),
        option("until", str, "--until", help="Recipe: stop after this step."),
        option("start", str, "--from", help="Recipe: run again from this step (it and those after start over)."),
        option("scale", float, "--scale", help="Recipe: this share of every training step's steps and rows (a quick try)."),
    ]
    config = option("config", Path, "--config", help="JSON/TOML/YAML file with any of the settings (flags win).")
    panels = {name: panel for panel, names in _PANELS.items() for name in names}
    return inspect.Signature(dataclass_options(TrainConfig, panels=panels, panel="Model and data")
                             + dataclass_options(StageSettings, " (both stages)", panel="Optimisation")
                             + [config] + recipe)


# `arr train --help` in groups; a TrainConfig field not named here shows under "Model and data".
_PANELS = {
    "LoRA": ("lora", "lora_r", "lora_alpha", "lora_dropout", "lora_targets", "train_norm", "state_scale"),
    "Objective": ("reference_form", "beta", "tau", "in_batch_alignment", "passes", "contrastive_weight",
                  "temperature", "in_batch_negatives", "pooling", "compression_weight", "reconstruction_weight",
                  "query_reconstruction_weight"),
    "Optimisation": ("gradient_accumulation_steps", "warmup_ratio", "scheduler", "weight_decay", "max_grad_norm",
                     "group_by_length", "gradient_checkpointing", "compile_layers", "dtype", "device", "seed"),
    "Evaluation while training": ("eval_data", "eval_split", "eval_steps", "probe_data", "probe_split", "probe_pairs",
                                  "keep_best", "logging_steps", "report_to"),
    "Run folder": ("output_dir", "save_steps", "resume", "overwrite", "keep_checkpoints"),
}


train.__signature__ = _signature()
