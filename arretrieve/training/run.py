"""`arr train`: stage 1 (information compression), stage 2 (conditional distribution alignment) or
the InfoNCE baseline, then register the result.

Run folder layout (`--output-dir`, default runs/<name>):
    config.json  metrics.jsonl  loss-<stage>.png
    compress/checkpoint-N/  compress/final/      (stage 1)
    align/checkpoint-N/     align/final/         (stage 2 or contrastive)
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..runtime import dtype_name, resolve_device, resolve_dtype
from ..errors import ArrError
from ..evaluation.beir_data import load_dataset
from ..evaluation.compression_probe import CompressionProbe, pairs_from_beir
from ..hashing import sha256_json, sha256_tree
from ..home import reference_cache_dir, save_npy_atomic, write_json_atomic
from ..registry.model_folder import trained_entry, weights_folder
from ..registry import ModelEntry, Registry
from ..registry.new_entry import new_entry
from .batches import CompressionCollator, CompressionSet, TripletCollator, TripletSet, prompt_template
from .config import CONTRASTIVE_OBJECTIVES, STAGE_NAMES, TrainConfig
from .data import load_compression_data, load_triplets
from .evaluation import RetrievalCheck, TrainingEval
from .losses import beta_saturation
from .model_setup import build_trainable
from .steps import alignment_step, compression_step, contrastive_step, reference_log_probs
from .trainer import (AutoRegEmbedTrainer, MetricsLog, StepModule, finished_stage_seconds, read_metrics, resume_metrics,
                      training_arguments)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    entry: ModelEntry
    run_dir: Path
    final_losses: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    earlier_seconds: float = 0.0  # trained by earlier processes of a resumed run (counted in the total)
    registered: bool = False  # only the main process registers (and reports) under torchrun


def _base_entry(config: TrainConfig, registry: Registry) -> ModelEntry:
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


def _is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate (or the only process): it alone writes run files and registers."""
    return int(os.environ.get("RANK", "0")) == 0


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])  # HF Trainer's checkpoint-<step>


def _latest_checkpoint(stage_dir: Path) -> str | None:
    checkpoints = sorted(stage_dir.glob("checkpoint-*"), key=_checkpoint_step)
    return str(checkpoints[-1]) if checkpoints else None


def _run_stage(stage: str, model, dataset, collator, step, config: TrainConfig, run_dir: Path, dtype, device,
               show_progress: bool, monitors: tuple[RetrievalCheck | None, CompressionProbe | None] = (None, None)
               ) -> tuple[float, int, float]:
    """Train one stage; returns its final loss, its steps and the seconds it had trained before this
    process resumed it (0 for a fresh start), so its recorded time covers every session."""
    stage_dir = run_dir / stage
    resume = _latest_checkpoint(stage_dir) if config.resume else None
    elapsed = 0.0
    if resume:
        log.info("resuming %s from %s", stage, resume)
        if _is_main_process():
            elapsed = resume_metrics(run_dir / "metrics.jsonl", stage, _checkpoint_step(Path(resume)))
    callbacks = [MetricsLog(run_dir / "metrics.jsonl", stage, show_progress, elapsed)]
    retrieval, probe = monitors
    if retrieval or probe:
        callbacks.append(TrainingEval(model, run_dir / "metrics.jsonl", stage, config.eval_steps, dtype, retrieval=retrieval,
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
    output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(stage_dir / "final"))
    _barrier()  # every rank reads these weights next
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return (losses[-1] if losses else float(output.training_loss)), trainer.state.global_step, elapsed


def _reference_scores(model, dataset: TripletSet, key: dict, batch_size: int, show_progress: bool) -> torch.Tensor:
    """π_ref(pos|e_q) and π_ref(neg_j|e_q) for every triplet, computed once and cached on disk."""
    path = reference_cache_dir() / f"{sha256_json(key)[:32]}.npy"
    if path.is_file():
        try:
            scores = np.load(path)  # never pickles (allow_pickle is off)
        except (OSError, ValueError, EOFError):
            scores = np.zeros(0)  # damaged: computed again below
        if scores.shape == (len(dataset), 1 + dataset.num_negatives) and np.isfinite(scores).all():
            log.info("reference scores reused from %s", path)
            return torch.from_numpy(scores)
    collator = TripletCollator(model.pad_id)
    model.eval()
    rows = []
    from ..runtime import progress_bar

    with progress_bar() if show_progress else contextlib.nullcontext() as progress:
        task = progress.add_task("reference scores", total=len(dataset)) if progress else None
        for start in range(0, len(dataset), batch_size):
            batch = collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=key["dtype"] == "bfloat16"):
                rows.append(reference_log_probs(model, batch).cpu())
            if progress:
                progress.update(task, advance=batch["encoder_lengths"].shape[0] // 2)
    scores = torch.cat(rows)
    save_npy_atomic(path, scores.numpy())  # several ranks may write it at once
    return scores


def _plot_losses(run_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(run_dir / "metrics.jsonl")
    written = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        points = [(r["step"], r["loss"]) for r in records if r["stage"] == stage and "loss" in r]
        evals = {metric: [(r["step"], r[metric]) for r in records if r["stage"] == stage and metric in r]
                 for metric in ("ndcg@10", "probe_specific_share", "probe_identification")}
        if not points:
            continue
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.plot(*zip(*points), marker="." if len(points) < 50 else None)
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.set_title(f"{run_dir.name}: {stage}")
        if any(evals.values()):
            quality = axes.twinx()
            for (metric, points_of), colour in zip(evals.items(), ("tab:orange", "tab:green", "tab:red")):
                if points_of:
                    quality.plot(*zip(*points_of), color=colour, marker="o", label=metric)
            quality.set_ylabel("eval (0-1)")
            quality.legend(loc="lower right", fontsize="small")
        figure.tight_layout()
        path = run_dir / f"loss-{stage}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


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
    compression: tuple | None  # (examples, fingerprint) of the stage-1 data
    triplets: tuple | None  # (examples, fingerprint) of the stage-2 data
    show_progress: bool
    provenance_data: dict = field(default_factory=dict)


def train(config: TrainConfig, registry: Registry | None = None, show_progress: bool = False) -> TrainResult:
    """Run the configured stages and register the trained model under `config.name`."""
    started = time.perf_counter()
    registry = registry or Registry()
    run = _prepare(config, registry, show_progress)
    do_compress, do_align = config.needs()
    result = TrainResult(entry=run.base, run_dir=run.run_dir)
    init_from = _starting_weights(run, do_compress)
    if do_compress:
        init_from = _compress(run, result, init_from)
    if do_align:
        init_from = _align(run, result, init_from)
    if not _is_main_process():
        return result
    if (run.run_dir / "metrics.jsonl").is_file():
        _plot_losses(run.run_dir)
    result.seconds["total"] = round(result.earlier_seconds + time.perf_counter() - started, 1)
    result.entry = _register(run, registry, init_from.resolve(), result)
    result.registered = True
    return result


def _prepare(config: TrainConfig, registry: Registry, show_progress: bool) -> TrainingRun:
    """Check the settings and read and check all data before any model is loaded; open the run folder."""
    if _is_main_process() and config.name in registry.names() and not (config.overwrite or config.resume):
        raise ArrError(f"a model named {config.name!r} is already registered; choose another --name or pass --overwrite")
    base = _base_entry(config, registry)
    do_compress, do_align = config.needs()
    if do_compress and not config.compression_data:
        raise ArrError("stage 1 needs --compression-data")
    if do_align and not config.alignment_data:
        raise ArrError("stage 2 needs --alignment-data")
    compression = load_compression_data(config.compression_data, config.fields, config.compress.examples) if do_compress else None
    triplets = load_triplets(config.alignment_data, config.fields, config.num_negatives, config.align.examples) if do_align else None
    eval_set = load_dataset(config.eval_data, config.eval_split) if config.eval_data else None
    probe = None
    if config.probe_data:
        probe = CompressionProbe(pairs_from_beir(load_dataset(config.probe_data, config.probe_split), config.probe_pairs),
                                 base.template("i_next"), base.template("i_self"))

    run_dir = Path(config.output_dir or Path("runs") / config.name)
    record = {**config.to_dict(), "toolkit_version": __version__,
              "data_fingerprints": {"compression": compression and compression[1], "alignment": triplets and triplets[1]}}
    if _is_main_process():
        if run_dir.exists() and any(run_dir.iterdir()) and not config.resume:
            if not config.overwrite:
                raise ArrError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over")
            shutil.rmtree(run_dir)
        if config.resume and (run_dir / "config.json").is_file():
            _check_resumable(run_dir, json.loads((run_dir / "config.json").read_text()), json.loads(json.dumps(record)))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "config.json", record)
    torch.set_flush_denormal(True)  # saturated sigmoid terms otherwise make fp32 steps several times slower
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    pooling = config.pooling if config.objective in CONTRASTIVE_OBJECTIVES else "compress-mean"
    # In-training evaluation encodes as the trained model will: its prompts and pooling.
    monitors = (RetrievalCheck(replace(base, pooling=pooling), eval_set, dtype) if eval_set else None, probe)
    return TrainingRun(config, base, run_dir, device, dtype, monitors, pooling, compression, triplets, show_progress)


# What a resumed run may change: where and how it runs and how often it measures, never what it
# trains or what it is measured on (keep-best compares every evaluation of the run).
_RESUMABLE_CHANGES = {"name", "resume", "overwrite", "device", "dtype", "logging_steps", "save_steps", "eval_steps",
                      "output_dir", "toolkit_version"}


def _check_resumable(run_dir: Path, started: dict, now: dict) -> None:
    """Refuse `--resume` with settings or data other than those the run started with: the
    checkpoint's optimizer, schedule and data position belong to those."""

    def flat(settings: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in settings.items():
            if prefix == "" and key in _RESUMABLE_CHANGES:
                continue
            if isinstance(value, dict) and key != "prompts":
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    before, after = flat(started), flat(now)
    # The training files are compared by content, so a run can resume with its data at another path;
    # a run folder from before fingerprints were recorded compares the paths.
    ignored = ("compression_data", "alignment_data") if "data_fingerprints.alignment" in before else ("data_fingerprints.",)
    before, after = ({k: v for k, v in items.items() if not k.startswith(ignored)} for items in (before, after))
    changed = [f"{key} {before.get(key)!r} -> {after.get(key)!r}" for key in sorted(before.keys() | after.keys())
               if before.get(key) != after.get(key)]
    if changed:
        raise ArrError(f"cannot resume {run_dir}: it started with other settings or data ({'; '.join(changed)}); "
                       "resume with the settings it started with, or start over with --overwrite or another --output-dir")


def _starting_weights(run: TrainingRun, do_compress: bool) -> Path | None:
    """The trained weights a run continues (those of a trained `--base`, whatever the stage or
    objective), or None to start from an untrained base."""
    base, config = run.base, run.config
    if base.weights == "base":
        if not do_compress and config.objective not in CONTRASTIVE_OBJECTIVES:
            raise ArrError(f"--stage align starts from a stage-1 model; {base.name!r} is an untrained base")
        return None
    # An adapter continues as LoRA, or merged into the base under full fine-tuning; fully
    # fine-tuned weights cannot take LoRA, whose decoder is the base under the adapters.
    if base.weights == "full" and config.lora:
        raise ArrError(f"{base.name!r} holds fully fine-tuned weights; a run continuing it must use full fine-tuning "
                       "(--full, lora = false)")
    return weights_folder(base)


def _compress(run: TrainingRun, result: TrainResult, init_from: Path | None) -> Path:
    """Stage 1 (information compression), from the base or from `init_from` (a trained base's
    weights); returns the folder of its final weights."""
    config = run.config
    examples, fingerprint = run.compression
    run.provenance_data["compression"] = {"source": config.compression_data, "fingerprint": fingerprint, "examples": len(examples)}
    final = run.run_dir / "compress" / "final"
    if config.resume and (final / "compress_embeddings.safetensors").is_file():
        log.info("stage 1 already finished in %s", final)
        result.seconds["compress"] = finished_stage_seconds(run.run_dir / "metrics.jsonl", "compress")
        result.earlier_seconds += result.seconds["compress"]
        return final
    stage_started = time.perf_counter()
    model = build_trainable(run.base, config, run.dtype, init_from=init_from)
    dataset = CompressionSet(model, examples, config.max_target_length)
    _report_truncation("compression", dataset.truncation, config)
    loss, steps, earlier = _run_stage("compress", model, dataset, CompressionCollator(model.pad_id), compression_step,
                                      config, run.run_dir, run.dtype, run.device, run.show_progress, run.monitors)
    result.final_losses["compress"], result.steps["compress"] = loss, steps
    result.seconds["compress"] = round(earlier + time.perf_counter() - stage_started, 1)
    result.earlier_seconds += earlier
    del model
    gc.collect()  # Trainer/accelerate keep reference cycles: free stage 1 before stage 2 allocates
    return final


def _align(run: TrainingRun, result: TrainResult, init_from: Path | None) -> Path:
    """Stage 2 (conditional distribution alignment) or the contrastive baseline, from `init_from`
    (stage-1 or other trained weights; None only for the baseline on an untrained base)."""
    config, base = run.config, run.base
    examples, fingerprint = run.triplets
    run.provenance_data["alignment"] = {"source": config.alignment_data, "fingerprint": fingerprint, "examples": len(examples)}
    stage_started = time.perf_counter()
    model = build_trainable(base, config, run.dtype, init_from=init_from)
    contrastive = config.objective in CONTRASTIVE_OBJECTIVES
    roles = ("query", "document") if contrastive else ("i_next", "i_self")
    dataset = TripletSet(model, examples, prompt_template(base.prompts, roles[0]), prompt_template(base.prompts, roles[1]),
                         config.max_target_length, query_targets=config.objective == "contrastive+compression")
    _report_truncation("alignment", dataset.truncation, config)
    step = contrastive_step if contrastive else alignment_step
    if config.in_batch_alignment and not contrastive:
        # The reference term of in-batch pairs: the frozen stage-1 model, scored on the fly.
        reference_model = build_trainable(base, config, run.dtype, init_from=init_from).to(run.device).requires_grad_(False).eval()
        step = functools.partial(alignment_step, reference_model=reference_model)
    elif not contrastive:
        key = {"data": fingerprint, "stage1": sha256_tree(init_from), "base": base.base_sha256 or base.base,
               "dtype": dtype_name(run.dtype), "max_length": config.max_length, "max_target_length": config.max_target_length,
               "prompt": base.prompts.get("i_next"), "add_bos": base.add_bos, "k": model.num_compress_tokens}
        dataset.reference = _reference_scores(model, dataset, key, config.align.batch_size, run.show_progress)
        _warn_if_saturated(dataset.reference, config)
    loss, steps, earlier = _run_stage("align", model, dataset, TripletCollator(model.pad_id), step, config, run.run_dir,
                                      run.dtype, run.device, run.show_progress, run.monitors)
    result.final_losses["align"], result.steps["align"] = loss, steps
    result.seconds["align"] = round(earlier + time.perf_counter() - stage_started, 1)
    result.earlier_seconds += earlier
    del model, step
    gc.collect()
    return run.run_dir / "align" / "final"


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
    stages = [s for s, wanted in zip(STAGE_NAMES, config.needs()) if wanted]
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


def _report_truncation(what: str, truncation, config: TrainConfig) -> None:
    if truncation.inputs or truncation.targets:
        log.warning("%s data: %d encoder inputs cut to %d tokens and %d decoder targets cut to %d tokens (text only)",
                    what, truncation.inputs, config.max_length, truncation.targets, config.max_target_length)
