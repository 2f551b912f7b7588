"""What a run folder reports: its metrics.jsonl records and the loss plots drawn from them."""

from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
# The names of what the in-training evaluation records (training/evaluation.py), keep-best chooses by
# (TrainConfig.keep_best) and the plots draw.
RETRIEVAL_METRICS = ("ndcg@10", "recall@10")
PROBE_METRICS = ("specific_share", "specific_share_stderr", "identification", "self_identification", "generic_gain",
                 "state_norm", "token_norm")
KEEP_BEST_METRICS = RETRIEVAL_METRICS + tuple(f"probe_{m}" for m in ("specific_share", "identification", "self_identification"))
PLOTTED_METRICS = ("ndcg@10", "probe_specific_share", "probe_identification")


def metrics_path(run_dir: Path) -> Path:
    return run_dir / METRICS_FILE


def read_metrics(path: Path) -> list[dict]:
    """A run's metrics.jsonl records (none before its first log)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def last_evaluations(run_dir: Path) -> dict[str, dict[str, float]]:
    """Each stage's last in-training evaluation (its step and the metrics measured then)."""
    last: dict[str, dict[str, float]] = {}
    names = RETRIEVAL_METRICS + tuple(f"probe_{m}" for m in ("specific_share", "identification", "self_identification"))
    for record in read_metrics(metrics_path(run_dir)):
        measured = {k: record[k] for k in names if k in record}
        if measured:
            last[record["stage"]] = {"step": record["step"], **measured}
    return last


def plot_losses(run_dir: Path) -> list[Path]:
    """loss-<stage>.png per stage: the loss and, on a second axis, the in-training evaluations."""
    from ..plotting import pyplot

    plt = pyplot()

    records = read_metrics(metrics_path(run_dir))
    written = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        points = [(r["step"], r["loss"]) for r in records if r["stage"] == stage and "loss" in r]
        evals = {metric: [(r["step"], r[metric]) for r in records if r["stage"] == stage and metric in r]
                 for metric in PLOTTED_METRICS}
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
