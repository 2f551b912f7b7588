"""`arr train`: AutoRegEmbed stage 1 + stage 2 (or the InfoNCE baseline); registers the result."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .output import console


def train(
    name: Optional[str] = typer.Option(None, help="Registry name of the trained model."),
    base: Optional[str] = typer.Option(None, help="Registry entry to start from (prompts, k) or a base source. [default: smollm2-135m]"),
    compression_data: Optional[str] = typer.Option(None, help="Stage-1 rows {context, instruction, output}: file or HF dataset id."),
    alignment_data: Optional[str] = typer.Option(None, help="Stage-2 rows {query, pos, neg (string or list)}: file or HF dataset id."),
    stage: Optional[str] = typer.Option(None, help="compress, align or all. [default: all]"),
    objective: Optional[str] = typer.Option(None, help="autoregembed or contrastive (InfoNCE baseline). [default: autoregembed]"),
    reference_form: Optional[str] = typer.Option(None, help="Stage-2 reference term: code (adds the margin) or paper (DPO form)."),
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA with trainable compress rows, or full fine-tuning. [default: lora]"),
    max_steps: Optional[int] = typer.Option(None, help="Steps per stage (overrides epochs)."),
    epochs: Optional[float] = typer.Option(None, help="Epochs per stage."),
    batch_size: Optional[int] = typer.Option(None, help="Examples per step, both stages."),
    lr: Optional[float] = typer.Option(None, help="Learning rate, both stages."),
    examples: Optional[int] = typer.Option(None, help="Use only the first N rows of each data file."),
    num_negatives: Optional[int] = typer.Option(None, help="Hard negatives per triplet."),
    passes: Optional[str] = typer.Option(None, help="Stage-2 passes: batched or sequential (reference structure, less memory)."),
    preset: Optional[str] = typer.Option(None, help="paper: the paper's hyperparameters."),
    eval_data: Optional[str] = typer.Option(None, help="Small BEIR folder scored (nDCG@10) during training, into metrics.jsonl."),
    eval_split: Optional[str] = typer.Option(None, help="Qrels split of --eval-data. [default: test]"),
    eval_steps: Optional[int] = typer.Option(None, help="Evaluate every N steps (and before the first, after the last). [default: 20]"),
    probe_data: Optional[str] = typer.Option(None, help="BEIR folder of held-out pairs for the compression probe, measured with --eval-steps."),
    probe_split: Optional[str] = typer.Option(None, help="Qrels split of --probe-data. [default: test]"),
    keep_best: Optional[str] = typer.Option(None, help="Restore each stage's best evaluation by this metric: ndcg@10, recall@10 or probe_<name>."),
    train_norm: Optional[bool] = typer.Option(None, "--train-norm/--no-train-norm", help="LoRA: also train the final norm (the states' scale)."),
    state_scale: Optional[bool] = typer.Option(None, "--state-scale/--no-state-scale", help="Learn a scalar on the states the decoder reads, started at the token-embedding scale."),
    dtype: Optional[str] = typer.Option(None, help="auto (bf16 where native), float32 or bfloat16."),
    output_dir: Optional[Path] = typer.Option(None, help="Run folder. [default: runs/NAME]"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the run folder and registry entry over."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML/YAML file with any of the settings (flags win)."),
) -> None:
    """Train an AutoRegEmbed model (or the contrastive baseline) and add it to the registry.

    Settings not given as flags come from --config, then --preset, then the defaults; every
    setting of TrainConfig (lora_r, beta, tau, temperature, pooling, warmup_ratio, save_steps, ...)
    can be set in the config file.
    """
    from arretrieve.training import build_config, read_config_file, train as run_training

    flags = {
        "name": name, "base": base, "compression_data": compression_data, "alignment_data": alignment_data,
        "stage": stage, "objective": objective, "reference_form": reference_form, "lora": lora,
        "num_negatives": num_negatives, "passes": passes, "preset": preset, "dtype": dtype,
        "eval_data": eval_data, "eval_split": eval_split, "eval_steps": eval_steps, "probe_data": probe_data,
        "probe_split": probe_split, "keep_best": keep_best, "train_norm": train_norm,
        "state_scale": state_scale,
        "output_dir": str(output_dir) if output_dir else None, "resume": resume or None, "overwrite": overwrite or None,
    }
    for key, value in (("max_steps", max_steps), ("epochs", epochs), ("batch_size", batch_size), ("lr", lr),
                       ("examples", examples)):
        if value is not None:
            flags[f"compress_{key}"] = flags[f"align_{key}"] = value
    settings = build_config(read_config_file(config) if config else {}, flags)
    result = run_training(settings, show_progress=True)
    if not result.registered:  # a non-main torchrun process: rank 0 reports
        return
    losses = ", ".join(f"{stage} {loss:.4f}" for stage, loss in result.final_losses.items())
    console.print(f"trained {result.entry.name} ({losses}; {result.seconds.get('total', 0):.0f} s) → {result.run_dir}", highlight=False)
    console.print(f"registered {result.entry.name} (fingerprint {result.entry.fingerprint}); use it with --model {result.entry.name}", highlight=False)
