"""`arr adapt CORPUS --name NAME`: adapt a model to a corpus without queries or labels."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import Device
from .train_command import report_recipe


def adapt(
    corpus: Path = typer.Argument(..., help="The documents to adapt to: any corpus arr index reads (a BEIR folder reads only its corpus.jsonl)."),
    name: str = typer.Option(..., "--name", help="Registry name of the adapted model."),
    base: Optional[str] = typer.Option(None, "--base", help="The AutoRegEmbed model to adapt (default: the registry's default)."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Run folder (default: runs/NAME)."),
    until: Optional[str] = typer.Option(None, "--until", help="Stop after this step (pseudo, mined, train, train-r64)."),
    start: Optional[str] = typer.Option(None, "--from", help="Run again from this step (it and those after start over)."),
    scale: Optional[float] = typer.Option(None, "--scale", help="This share of the training steps (a quick try)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Training steps (the recipe's: 50)."),
    device: str = Device,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a model already registered as NAME."),
) -> None:
    """Adapt a model to CORPUS from its documents alone: its decoder writes a query for each document,
    then it trains on them (the `adapt` recipe; run the same command again to resume)."""
    from arretrieve.training.adapt import adapt as run_adaptation

    flags = {"device": device, **({"align": {"max_steps": max_steps}} if max_steps else {})}
    report_recipe(run_adaptation(corpus, name, base, output_dir=output_dir, until=until, start=start, scale=scale,
                                 overwrite=overwrite, flags=flags, show_progress=True))
