"""HF Trainer, taught our losses and our (small) checkpoints: only trainable weights are saved."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import Trainer, TrainerCallback

from .model_setup import load_trained_state, save_trained


class StepModule(torch.nn.Module):
    """The model with one objective's step as its `forward`, so DDP/FSDP wrappers see the
    computation go through `forward` (which is where they synchronise gradients)."""

    def __init__(self, model, step: Callable, config):
        super().__init__()
        self.model, self.step, self.train_config = model, step, config

    def forward(self, **batch) -> torch.Tensor:
        return self.step(self.model, batch, self.train_config)


class AutoRegEmbedTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = model(**inputs)
        return (loss, None) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                    dataset=dataset, lengths=dataset.lengths)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        save_trained(self.model.model, Path(output_dir or self.args.output_dir))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        load_trained_state(self.model.model, Path(resume_from_checkpoint))


class MetricsLog(TrainerCallback):
    """Appends every logged loss to metrics.jsonl (with the stage) and draws a progress bar with loss and ETA.
    `seconds` counts the stage's training time, continued across resumes from `elapsed`."""

    def __init__(self, path: Path, stage: str, show_progress: bool, elapsed: float = 0.0):
        self.path, self.stage, self.show_progress = path, stage, show_progress
        self.progress = self.task = None
        self.last_loss: float | None = None
        self.started = time.perf_counter() - elapsed

    def on_train_begin(self, args, state, control, **kwargs):
        if self.show_progress and state.is_world_process_zero:
            from ..runtime import progress_bar

            self.progress = progress_bar("steps", show_loss=True)
            self.progress.start()
            self.task = self.progress.add_task(self.stage, total=state.max_steps, completed=state.global_step, loss="-")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        self.last_loss = float(logs["loss"])
        record = {"stage": self.stage, "step": state.global_step, "loss": self.last_loss,
                  "learning_rate": logs.get("learning_rate"), "seconds": round(time.perf_counter() - self.started, 1)}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.progress:
            self.progress.update(self.task, loss=f"{self.last_loss:.4f}")

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == state.max_steps:
            control.should_log = True  # the final loss is always recorded, whatever logging_steps says
        if self.progress:
            self.progress.update(self.task, completed=state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress:
            self.progress.stop()


def training_arguments(config, stage: str, output_dir: Path, dtype: torch.dtype, device: torch.device):
    from transformers import TrainingArguments

    settings = config.stage_settings(stage)
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=settings.lr,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.scheduler,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=min(config.logging_steps, settings.max_steps) if settings.max_steps > 0 else config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        data_seed=config.seed,
        bf16=dtype == torch.bfloat16,
        use_cpu=device.type == "cpu",
        fsdp="full_shard" if config.fsdp else "",  # refused on CPU and in one process (run.check_sharding)
        report_to=[] if config.report_to == "none" else [config.report_to],
        remove_unused_columns=False,
        label_names=[],
        disable_tqdm=True,
        dataloader_drop_last=True,
        # Batches of similar lengths (shuffled groups, seeded): far less padding per step.
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
    )
