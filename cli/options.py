"""Options several commands share, declared once (Typer reads the same OptionInfo wherever it is a default)."""

from __future__ import annotations

import typer

Device = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
Dtype = typer.Option(None, "--dtype", help="Override the model's dtype: float32, bfloat16 or float16.")
IndexDir = typer.Option(None, "--index-dir", help="Where indexes live (default: $ARR_INDEXES, else ./indexes if present, "
                                                   "else $ARR_HOME/indexes).")
BatchSize = typer.Option(16, "--batch-size", min=1, help="Texts per forward pass (halved automatically on out-of-memory).")
