"""`arr models list|show|add|export|import|remove|default`: the model registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .output import console, escape

app = typer.Typer(help="The model registry shared by every command.", no_args_is_help=True)


def _unavailable_reason(entry) -> str | None:
    from arretrieve.modeling.backbone import resolve_base
    from arretrieve.errors import ArrError

    try:
        resolve_base(entry.base)
    except ArrError as exc:
        return str(exc)
    return None


@app.command("list")
def list_models() -> None:
    """List registered models; the default is marked with *."""
    from rich import box
    from rich.table import Table

    from arretrieve.registry import Registry

    registry = Registry()
    default = registry.default_name
    table = Table("", "name", "kind", "dim", "k", "fingerprint", "source", box=box.SIMPLE, pad_edge=False)
    for column in table.columns:
        column.no_wrap = True
    entries, broken = registry.scan()
    problems = [f"{name} cannot be read ({why}); `arr models remove {name}` deletes it" for name, why in broken]
    for entry in entries:
        reason = _unavailable_reason(entry)
        if reason:
            problems.append(f"{entry.name} is unavailable: {reason}")
        table.add_row(
            "*" if entry.name == default else "",
            entry.name,
            entry.kind,
            str(entry.dim),
            str(entry.num_compress_tokens or "-"),
            entry.fingerprint,
            ("built-in" if entry.builtin else "user") + (", unavailable" if reason else ""),
        )
    console.print(table)
    for line in problems:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False, markup=True)


@app.command("show")
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print the entry as JSON.")) -> None:
    """Print one entry: base, prompts, compress tokens, pooling, fingerprint and provenance."""
    from arretrieve.registry import Registry

    entry = Registry().get(name)
    payload = {**entry.to_dict(), "fingerprint": entry.fingerprint}
    if as_json:
        console.print_json(json.dumps(payload, ensure_ascii=False))
        return
    for key, value in payload.items():
        if key == "prompts":
            console.print("[bold]prompts[/]:", markup=True)
            for role, template in value.items():
                console.print(f"  {role}: {template!r}", highlight=False, markup=False)
        else:
            console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False, markup=True)


@app.command("add")
def add(
    name: str,
    base: str = typer.Option(..., help="Hugging Face id, local model folder, or .gguf file."),
    kind: str = typer.Option("autoregembed", help="autoregembed or sentence-transformers."),
    from_json: Optional[Path] = typer.Option(None, "--from-json", help="Take the remaining fields from this JSON file."),
    num_compress_tokens: int = typer.Option(5, "--k", help="Compress tokens (autoregembed)."),
    max_length: int = typer.Option(512, help="Maximum tokens per text, prompt included."),
    dtype: str = typer.Option("auto", help="auto, float32, bfloat16 or float16."),
    add_bos: Optional[bool] = typer.Option(None, "--add-bos/--no-add-bos", help="Default: when the tokenizer has a BOS."),
    revision: Optional[str] = typer.Option(None, help="Hub revision (commit, tag or branch)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own Python code to run when loading."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing user entry of that name."),
) -> None:
    """Register a model under NAME (the base is hashed so changes to it are detected)."""
    from arretrieve.registry import Registry
    from arretrieve.registry.new_entry import new_entry, read_overrides

    overrides = read_overrides(from_json) if from_json else {}
    entry = new_entry(
        name,
        base=base,
        kind=kind,
        num_compress_tokens=num_compress_tokens,
        max_length=max_length,
        dtype=dtype,
        add_bos=add_bos,
        revision=revision,
        trust_remote_code=trust_remote_code,
        overrides=overrides,
    )
    path = Registry().add(entry, overwrite=overwrite)
    console.print(f"added {entry.name} (fingerprint {entry.fingerprint}) → {path}")


@app.command("export")
def export(
    name: str,
    folder: Path = typer.Argument(..., help="New folder to write."),
    format: str = typer.Option("arretrieve", "--format", help="arretrieve (entry.json + weights/, for `arr models "
                               "import`) or sentence-transformers (a folder SentenceTransformer loads)."),
    as_name: Optional[str] = typer.Option(None, "--name", help="Name the exported model differently (arretrieve format)."),
    half: Optional[bool] = typer.Option(None, "--half/--full-precision", help="Store fp32 tensors as fp16. Default: "
                                        "half for arretrieve folders, full precision for sentence-transformers."),
    low_rank: Optional[int] = typer.Option(None, "--low-rank", help="Fully fine-tuned weights as a LoRA adapter of "
                                           "this rank (truncated SVD of the difference from the base; arretrieve "
                                           "format): another, approximate model, a fraction of the size."),
) -> None:
    """Write a model as one self-describing folder to share: for `arr models import`, or for sentence-transformers."""
    from arretrieve.export import export_model
    from arretrieve.registry import Registry

    registry = Registry()
    exported = export_model(registry.get(name), folder, format, name=as_name, half=half, low_rank=low_rank,
                            registry=registry)
    if format == "arretrieve":
        summary = f"exported {name} as {exported.name} (fingerprint {exported.fingerprint}"
        if low_rank is not None:
            summary += f", rank {low_rank} keeping {exported.low_rank['kept']:.1%} of the difference from the base"
    else:
        summary = (f"exported {name} for sentence-transformers: SentenceTransformer({str(folder)!r}, "
                   f"trust_remote_code=True) (fingerprint {exported.fingerprint}")
    console.print(f"{summary}, {exported.size_bytes / 1e6:.1f} MB) → {folder}")


@app.command("import")
def import_model(
    folder: Path = typer.Argument(..., help="A folder written by `arr models export`."),
    as_name: Optional[str] = typer.Option(None, "--name", help="Register it under another name."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing user entry of that name."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Grant the model's own Python code, if its entry asks for it."),
) -> None:
    """Register an exported model folder (its weights stay where they are and are hash-checked on load)."""
    from arretrieve.registry import Registry
    from arretrieve.registry.model_folder import import_model_folder

    entry = import_model_folder(folder, name=as_name, trust_remote_code=trust_remote_code)
    path = Registry().add(entry, overwrite=overwrite)
    console.print(f"imported {entry.name} (fingerprint {entry.fingerprint}) → {path}")


@app.command("remove")
def remove(name: str) -> None:
    """Remove a user entry (built-in entries stay)."""
    from arretrieve.registry import Registry

    Registry().remove(name)
    console.print(f"removed {name}")


@app.command("default")
def default(name: Optional[str] = typer.Argument(None, help="Make this the default model.")) -> None:
    """Show the default model, or set it."""
    from arretrieve.registry import Registry

    registry = Registry()
    if name:
        registry.set_default(name)
    console.print(registry.default_name)
