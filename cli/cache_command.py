"""`arr cache list|prune`: the caches under $ARR_HOME/cache (arretrieve.cache.CACHES)."""

from __future__ import annotations

from typing import List

import typer

from arretrieve.cache import CACHES

from .output import console

app = typer.Typer(help="What arretrieve keeps under $ARR_HOME/cache (all of it can be rebuilt).", no_args_is_help=True)


@app.command("list")
def list_cache(kind: List[str] = typer.Argument(None, help=f"{', '.join(CACHES)} (default: all).")) -> None:
    """Cache entries with their size and age, largest first."""
    from rich import box
    from rich.table import Table

    from arretrieve.cache import cache_entries

    entries = cache_entries(list(kind or []) or None)
    table = Table("kind", "entry", "size", "age", box=box.SIMPLE, pad_edge=False)
    for entry in entries:
        table.add_row(entry.kind, entry.path.name, f"{entry.bytes / 1e6:.1f} MB", f"{entry.age_days:.1f} d")
    console.print(table)
    totals = {k: sum(e.bytes for e in entries if e.kind == k) for k in CACHES}
    console.print("total: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in totals.items() if v) if entries else "the caches are empty")


@app.command("prune")
def prune_cache(
    kind: List[str] = typer.Argument(..., help=f"{', '.join(CACHES)}, or all."),
    older_than: float = typer.Option(0.0, "--older-than", min=0.0, help="Only entries untouched for more than this many days."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed, remove nothing."),
) -> None:
    """Remove cache entries (they are rebuilt when needed)."""
    from arretrieve.cache import prune

    removed = prune(list(kind), older_than, dry_run)
    freed = sum(e.bytes for e in removed) / 1e6
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        console.print(f"{verb} {entry.kind}/{entry.path.name} ({entry.bytes / 1e6:.1f} MB)")
    console.print(f"{verb} {len(removed)} entries, {freed:.1f} MB")
