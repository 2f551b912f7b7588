"""`arr train`: the stages of the configured objective (training/objectives.py), each trained by one
stage runner, then the trained model registered. The run folder's layout and policies are
run_folder.py's.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .. import __version__
from ..runtime import dtype_name, resolve_device, resolve_dtype
from ..errors import ArrError
from ..evaluation.compression_probe import CompressionProbe, pairs_from_beir
from ..hashing import sha256_tree
from ..home import disk_writes, write_folder_atomic
from ..plotting import MISSING as PLOTS_MISSING, plots_available
from ..registry.model_folder import WEIGHTS_SOURCE, trained_entry, weights_folder
from ..registry import ModelEntry, Registry
from .batches import CompressionCollator, CompressionSet, TripletCollator, TripletSet
from .config import TrainConfig
from .inputs import TrainingInputs, is_main_process, read_training_inputs
from .evaluation import RetrievalCheck, TrainingEval
from .losses import beta_saturation
from .model_setup import build_trainable
from .objectives import Stage, active_terms, batch_needs, objective, uses_reference_scores
from .report import metrics_path, plot_losses
from .run_folder import (checkpoint_step, finished_stage_seconds, latest_checkpoint, open_run_folder, prune_stage,
                         reference_scores, remove_incomplete_checkpoints, resume_metrics)
from .steps import stage_loss
from .trainer import AutoRegEmbedTrainer, MetricsLog, StepModule, training_arguments

log = logging.getLogger(__name__)
FINAL_MARKER = "stage.json"  # written last into a stage's final/ weights


@dataclass
class TrainResult:
    entry: ModelEntry
    run_dir: Path
    final_losses: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    earlier_seconds: float = 0.0  # trained by earlier processes of a resumed run (counted in the total)
    registered: bool = False  # only the main process registers (and reports) under torchrun


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _run_stage(stage: str, model, dataset, collator, step, config: TrainConfig, run_dir: Path, dtype, device,
               show_progress: bool, monitors: tuple[RetrievalCheck | None, CompressionProbe | None] = (None, None)
               ) -> tuple[float, int, float]:
    """Train one stage; returns its final loss, its steps and the seconds it had trained before this
    process resumed it (0 for a fresh start), so its recorded time covers every session."""
    stage_dir, metrics = run_dir / stage, metrics_path(run_dir)
    resume = latest_checkpoint(stage_dir) if config.resume else None
    elapsed = 0.0
    if resume:
        log.info("resuming %s from %s", stage, resume)
        if is_main_process():
            elapsed = resume_metrics(metrics, stage, checkpoint_step(Path(resume)))
    callbacks = [MetricsLog(metrics, stage, show_progress, elapsed)]
    retrieval, probe = monitors
    if retrieval or probe:
        callbacks.append(TrainingEval(model, metrics, stage, config.eval_steps, dtype, retrieval=retrieval,
                                      probe=probe, keep_best=config.keep_best, best_dir=stage_dir / "best"))
    trainer = AutoRegEmbedTrainer(
        model=StepModule(model, step, config),
        args=training_arguments(config, stage, stage_dir, dtype, device),
        train_dataset=dataset,
        data_collator=collator,
        callbacks=callbacks,
    )
    from transformers import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)  # MetricsLog reports instead
    trainer.remove_callback(ProgressCallback)
    try:
        with disk_writes(stage_dir, "the run keeps its last complete checkpoint: free space and run again with --resume"):
            output = trainer.train(resume_from_checkpoint=resume)
            if is_main_process():  # whole or not at all: a finished stage is one whose final/ exists
                write_folder_atomic(stage_dir / "final", lambda staging: trainer.save_model(str(staging)), FINAL_MARKER,
                                    {"step": trainer.state.global_step}, existing="replace")
    except BaseException:
        if is_main_process():
            remove_incomplete_checkpoints(stage_dir)  # gives the space back; no resume could use it
        raise
    _barrier()  # every rank reads these weights next
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return (losses[-1] if losses else float(output.training_loss)), trainer.state.global_step, elapsed


@dataclass
class TrainingRun:
    """What every stage of one `train` call shares, set up once by `_prepare`."""

    config: TrainConfig
    base: ModelEntry
    run_dir: Path
    device: torch.device
    dtype: torch.dtype
    monitors: tuple[RetrievalCheck | None, CompressionProbe | None]
    pooling: str  # the trained model's (and its in-training evaluation's)
    stages: tuple[Stage, ...]  # those this run trains, in order
    data: dict[str, tuple]  # (examples, fingerprint) of each stage's data, by its `Stage.data`
    show_progress: bool
    provenance_data: dict = field(default_factory=dict)


def train(config: TrainConfig, registry: Registry | None = None, show_progress: bool = False,
          inputs: TrainingInputs | None = None) -> TrainResult:
    """Run the configured stages and register the trained model under `config.name`; `inputs`, if
    given, are `read_training_inputs(config, registry)`'s (the CLI reads them before torch loads)."""
    started = time.perf_counter()
    registry = registry or Registry()
    run = _prepare(config, registry, show_progress, inputs)
    result = TrainResult(entry=run.base, run_dir=run.run_dir)
    init_from = _starting_weights(run)
    for stage in run.stages:
        init_from = _train_stage(run, result, stage, init_from)
    if not is_main_process():
        return result
    if metrics_path(run.run_dir).is_file():
        if plots_available():
            plot_losses(run.run_dir)
        else:  # a finished run is not failed for its pictures
            log.warning("no loss plots: %s", PLOTS_MISSING)
    result.seconds["total"] = round(result.earlier_seconds + time.perf_counter() - started, 1)
    result.entry = _register(run, registry, _keep_weights(init_from, registry.weights_dir(config.name), config), result)
    result.registered = True
    return result


def check_sharding(config: TrainConfig, device: torch.device) -> None:
    """--fsdp where it would not shard is refused, not run as something else."""
    if not config.fsdp:
        return
    if device.type != "cuda":
        raise ArrError("--fsdp needs GPUs: on a CPU, HF Trainer (through accelerate) trains with plain DDP instead, "
                       "although torch's own fully_shard runs there (benchmarks/fsdp_vs_ddp.py); train without --fsdp "
                       "(DDP under torchrun) or on GPUs")
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        raise ArrError("--fsdp shards the model over processes: run arr under torchrun --nproc-per-node N (N >= 2)")


def _prepare(config: TrainConfig, registry: Registry, show_progress: bool, inputs: TrainingInputs | None) -> TrainingRun:
    """The inputs read and checked (unless the caller did) before any model is loaded; the run folder opened."""
    inputs = inputs or read_training_inputs(config, registry)
    base, stages, data = inputs.base, inputs.stages, inputs.data
    probe = None
    if inputs.probe_set is not None:
        probe = CompressionProbe(pairs_from_beir(inputs.probe_set, config.probe_pairs),
                                 base.template("i_next"), base.template("i_self"))

    run_dir = Path(config.output_dir or Path("runs") / config.name)
    fingerprints = {kind: data[kind][1] if kind in data else None for kind in ("compression", "alignment")}
    record = {**config.to_dict(), "toolkit_version": __version__, "data_fingerprints": fingerprints}
    device = resolve_device(config.device)
    check_sharding(config, device)
    if is_main_process():
        open_run_folder(run_dir, record, resume=config.resume, overwrite=config.overwrite)
    torch.set_flush_denormal(True)  # saturated sigmoid terms otherwise make fp32 steps several times slower
    dtype = resolve_dtype(config.dtype, device)
    pooling = objective(config.objective).pooling or config.pooling
    # In-training evaluation encodes as the trained model will: its prompts and pooling.
    monitors = (RetrievalCheck(replace(base, pooling=pooling), inputs.eval_set, dtype) if inputs.eval_set else None, probe)
    return TrainingRun(config, base, run_dir, device, dtype, monitors, pooling, stages, data, show_progress)


def _starting_weights(run: TrainingRun) -> Path | None:
    """The trained weights a run continues (those of a trained `--base`, whatever the stage or
    objective), or None to start from an untrained base."""
    base, config = run.base, run.config
    if base.weights == "base":
        if objective(config.objective).stage("compress") and run.stages[0].name != "compress":
            raise ArrError(f"--stage align starts from a stage-1 model; {base.name!r} is an untrained base")
        return None
    # An adapter continues as LoRA, or merged into the base under full fine-tuning; fully
    # fine-tuned weights cannot take LoRA, whose decoder is the base under the adapters.
    if base.weights == "full" and config.lora:
        raise ArrError(f"{base.name!r} holds fully fine-tuned weights; a run continuing it must use full fine-tuning "
                       "(--full, lora = false)")
    return weights_folder(base)


def _train_stage(run: TrainingRun, result: TrainResult, stage: Stage, init_from: Path | None) -> Path:
    """One stage of the objective, from the base or from `init_from` (a trained base's or the
    previous stage's weights); returns the folder of its final weights. A stage an interrupted run
    had finished is not trained again."""
    config, base = run.config, run.base
    examples, fingerprint = run.data[stage.data]
    source = getattr(config, f"{stage.data}_data")
    run.provenance_data[stage.data] = {"source": source, "fingerprint": fingerprint, "examples": len(examples)}
    final = run.run_dir / stage.name / "final"
    if config.resume and (final / "compress_embeddings.safetensors").is_file():
        log.info("%s already finished in %s", stage.name, final)
        result.seconds[stage.name] = finished_stage_seconds(metrics_path(run.run_dir), stage.name)
        result.earlier_seconds += result.seconds[stage.name]
        return final
    stage_started = time.perf_counter()
    model = build_trainable(base, config, run.dtype, init_from=init_from)
    if stage.data == "compression":
        dataset, collator = CompressionSet(model, examples, config.max_target_length), CompressionCollator(model.pad_id)
    else:
        query_role, document_role = stage.roles
        dataset = TripletSet(model, examples, base.template(query_role), base.template(document_role),
                             config.max_target_length, batch_needs(stage, config))
        collator = TripletCollator(model.pad_id)
    _report_truncation(stage.data, dataset.truncation, config)
    step = functools.partial(stage_loss, stage)
    if config.in_batch_alignment and any(t.reference for t in active_terms(stage, config)):
        # The reference term of in-batch pairs: the frozen stage-1 model, scored on the fly.
        reference_model = build_trainable(base, config, run.dtype, init_from=init_from).to(run.device).requires_grad_(False).eval()
        step = functools.partial(stage_loss, stage, reference_model=reference_model)
    elif uses_reference_scores(stage, config):
        key = {"data": fingerprint, "stage1": sha256_tree(init_from), "base": base.base_sha256 or base.base,
               "dtype": dtype_name(run.dtype), "max_length": config.max_length, "max_target_length": config.max_target_length,
               "prompt": base.prompts.get("i_next"), "add_bos": base.add_bos, "k": model.num_compress_tokens}
        dataset.reference = reference_scores(model, dataset, key, config.align.batch_size, run.show_progress)
        _warn_if_saturated(dataset.reference, config)
    loss, steps, earlier = _run_stage(stage.name, model, dataset, collator, step, config, run.run_dir, run.dtype,
                                      run.device, run.show_progress, run.monitors)
    if steps == 0:  # e.g. fewer rows than one batch: registering the untrained model would pass for a result
        raise ArrError(f"{stage.title} ran no training step: {len(dataset)} rows and batches of "
                       f"{config.stage_settings(stage.name).batch_size} give none (use more rows or smaller batches)")
    result.final_losses[stage.name], result.steps[stage.name] = loss, steps
    result.seconds[stage.name] = round(earlier + time.perf_counter() - stage_started, 1)
    result.earlier_seconds += earlier
    if not config.keep_checkpoints and is_main_process():
        prune_stage(run.run_dir / stage.name)
    del model, step
    gc.collect()  # Trainer/accelerate keep reference cycles: free a stage before the next allocates
    return final


def _warn_if_saturated(reference: torch.Tensor, config: TrainConfig) -> None:
    saturated, median_margin = beta_saturation(reference, config.beta, config.reference_form)
    if saturated > 0.5:
        log.warning("beta %g saturates the alignment loss for %.0f%% of the triplets (their starting %s-form margins "
                    "are %.0f nats at the median): those barely train. A beta near %.2g keeps beta times that "
                    "margin near 1 (--beta)", config.beta, 100 * saturated, config.reference_form, median_margin,
                    1 / max(median_margin, 1e-6))


def _register(run: TrainingRun, registry: Registry, weights: Path, result: TrainResult) -> ModelEntry:
    """The trained model's entry (its base's prompts and settings, these weights, the whole
    provenance), added to the registry."""
    config, base = run.config, run.base
    stages = [stage.name for stage in run.stages]
    entry = trained_entry(
        base, name=config.name, weights="adapter" if config.lora else "full", weights_path=weights,
        num_compress_tokens=config.num_compress_tokens or base.num_compress_tokens, pooling=run.pooling,
        description=f"{config.objective} ({'+'.join(stages)}) from {base.name}",
        provenance={
            "trained_by": f"arr train (arretrieve {__version__})",
            "base_entry": base.name,
            "base_fingerprint": base.fingerprint,
            "objective": config.objective,
            "stages": stages,
            "data": run.provenance_data,
            "hyperparameters": config.to_dict(),
            "final_losses": result.final_losses,
            "steps": result.steps,
            "seconds": result.seconds,
            "training_dtype": dtype_name(run.dtype),
            "run_dir": str(run.run_dir.resolve()),
        },
    )
    registry.add(entry, overwrite=config.overwrite or config.resume)
    return entry


def _keep_weights(final: Path, folder: Path, config: TrainConfig) -> Path:
    """The trained weights copied where the registry keeps them for this model, so the run folder
    can be removed; written whole or not at all."""
    def copy(staging: Path) -> None:
        for path in sorted(final.iterdir()):
            if path.is_file():
                shutil.copy2(path, staging / path.name)

    existing = "replace" if config.overwrite or config.resume else "refuse"
    write_folder_atomic(folder, copy, WEIGHTS_SOURCE, {"run_dir": str(final.resolve())}, existing=existing)
    return folder


def _report_truncation(what: str, truncation, config: TrainConfig) -> None:
    if truncation.inputs or truncation.targets:
        log.warning("%s data: %d encoder inputs cut to %d tokens and %d decoder targets cut to %d tokens (text only)",
                    what, truncation.inputs, config.max_length, truncation.targets, config.max_target_length)
