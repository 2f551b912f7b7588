"""The run folder and its policies: opening it (fresh, over, or resumed), what a resumed run may
change, its checkpoints, the seconds earlier sessions trained, and the reference-score cache.

Layout (`--output-dir`, default runs/<name>):
    config.json  metrics.jsonl  loss-<stage>.png
    compress/checkpoint-N/  compress/final/      (stage 1)
    align/checkpoint-N/     align/final/         (stage 2 or contrastive)
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import ArrError
from ..hashing import sha256_json
from ..home import reference_cache_dir, save_npy_atomic, write_atomic, write_json_atomic
from ..modeling.folder_checks import read_json_file, safetensors_header
from ..runtime import progress_bar
from .batches import TripletCollator
from .report import read_metrics
from .steps import reference_log_probs

log = logging.getLogger(__name__)

# What a resumed run may change: where and how it runs and how often it measures, never what it
# trains or what it is measured on (keep-best compares every evaluation of the run).
RESUMABLE_CHANGES = {"name", "resume", "overwrite", "device", "dtype", "logging_steps", "save_steps", "eval_steps",
                     "output_dir", "toolkit_version", "keep_checkpoints", "report_to"}


def open_run_folder(run_dir: Path, record: dict, *, resume: bool, overwrite: bool) -> None:
    """Start the folder (or over it with `overwrite`), or check that `resume` continues it with the
    settings and data it started with; then write its config.json."""
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not (run_dir / "config.json").is_file():  # never delete a folder arr train did not make
            raise ArrError(f"{run_dir} is not empty and holds no run of arr train (no config.json); "
                           "name an empty or new --output-dir")
        if not (overwrite or _never_trained(run_dir)):
            raise ArrError(f"{run_dir} already holds a run; pass --resume to continue it or --overwrite to start over")
        shutil.rmtree(run_dir)
    if resume and (run_dir / "config.json").is_file():
        check_resumable(run_dir, json.loads((run_dir / "config.json").read_text()), json.loads(json.dumps(record)))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "config.json", record)


def _never_trained(run_dir: Path) -> bool:
    """A run folder `arr train` made (its config.json) whose run stopped before any checkpoint or
    final weights: it holds no training to lose, so it starts over without --overwrite."""
    return not any(run_dir.glob("*/checkpoint-*")) and not any(run_dir.glob("*/final"))


def prune_stage(stage_dir: Path) -> None:
    """A finished stage keeps its final weights: its checkpoints (with optimizer state) and the best
    evaluation's weights (already restored into final) go; best/best.json says which step was kept."""
    for folder in stage_dir.glob("checkpoint-*"):
        shutil.rmtree(folder, ignore_errors=True)
    for path in (stage_dir / "best").glob("*"):
        if path.name != "best.json":
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def check_resumable(run_dir: Path, started: dict, now: dict) -> None:
    """Refuse `--resume` with settings or data other than those the run started with: the
    checkpoint's optimizer, schedule and data position belong to those."""

    def flat(settings: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in settings.items():
            if prefix == "" and key in RESUMABLE_CHANGES:
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


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])  # HF Trainer's checkpoint-<step>


CHECKPOINT_WRITTEN_LAST = "trainer_state.json"  # HF Trainer's: a checkpoint without it is incomplete


def latest_checkpoint(stage_dir: Path) -> str | None:
    """The newest complete checkpoint, checked before a resume trusts it. One that a kill or a full
    disk stopped half-written is removed (it was never complete, nothing can resume from it)."""
    remove_incomplete_checkpoints(stage_dir)
    complete = [folder for folder in stage_dir.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", folder.name)]
    if not complete:
        return None
    complete.sort(key=checkpoint_step)
    _check_checkpoint(complete[-1], earlier=complete[-2] if len(complete) > 1 else None)
    return str(complete[-1])


def remove_incomplete_checkpoints(stage_dir: Path) -> None:
    for folder in stage_dir.glob("checkpoint-*"):
        if folder.is_dir() and not (folder / CHECKPOINT_WRITTEN_LAST).is_file():
            log.warning("%s was left half-written when the run stopped; removing it", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _check_checkpoint(folder: Path, earlier: Path | None) -> None:
    """Refuse in one line a checkpoint whose files are damaged (before transformers or torch read
    them and fail with a traceback): its state JSON, tensor headers and torch archives' checksums."""
    try:
        read_json_file(folder / CHECKPOINT_WRITTEN_LAST)
        for path in sorted(folder.glob("*.safetensors")):
            safetensors_header(path)
        for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
            if not zipfile.is_zipfile(path):
                raise ArrError(f"{path} is not a torch archive")
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged:
                raise ArrError(f"{path}: {damaged} fails its checksum")
    except (ArrError, OSError, zipfile.BadZipFile) as exc:
        instead = f"remove it to resume from {earlier.name}" if earlier else "start over with --overwrite"
        raise ArrError(f"cannot resume from {folder}: {exc}; {instead}") from None


def resume_metrics(path: Path, stage: str, step: int) -> float:
    """Before a stage resumes from its checkpoint at `step`: drop the stage's records of later steps
    (they are measured again, so they would appear twice) and return the training seconds the
    stage had logged by then, which the resumed run's clock continues from."""
    records = read_metrics(path)
    kept = [r for r in records if r.get("stage") != stage or r.get("step", 0) <= step]
    if len(kept) < len(records):
        write_atomic(path, lambda handle: handle.writelines(json.dumps(r) + "\n" for r in kept))
    return _logged_seconds(kept, stage)


def finished_stage_seconds(path: Path, stage: str) -> float:
    """The training seconds a stage that finished in an earlier process had logged."""
    return _logged_seconds(read_metrics(path), stage)


def _logged_seconds(records: list[dict], stage: str) -> float:
    return max((r["seconds"] for r in records if r.get("stage") == stage and "seconds" in r), default=0.0)


def reference_scores(model, dataset, key: dict, batch_size: int, show_progress: bool) -> torch.Tensor:
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
