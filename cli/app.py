"""`arr`: the Typer app. Commands import the library (and torch) only when they run."""

from __future__ import annotations

import sys

import typer

from . import adapt_command, beir_eval_command, cache_command, data_command, index_command, indexes_command, mine_command, models_command, search_command, serve_command, train_command

app = typer.Typer(
    name="arr",
    help="AutoRegEmbed LLM embedders: train, index with FAISS, search, and evaluate on BEIR.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from arretrieve import __version__

        print(f"arr {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """AutoRegEmbed LLM embedders: train, index with FAISS, search, and evaluate on BEIR."""


app.add_typer(models_command.app, name="models")
app.add_typer(indexes_command.app, name="indexes")
app.add_typer(cache_command.app, name="cache")
app.add_typer(data_command.app, name="data")
app.command("index")(index_command.index)
app.command("search")(search_command.search)
app.command("beir-eval")(beir_eval_command.beir_eval)
app.command("train")(train_command.train)
app.command("adapt")(adapt_command.adapt)
app.command("serve")(serve_command.serve)
app.command("mine-negatives")(mine_command.mine_negatives)


def main() -> None:
    from arretrieve.errors import ArrError

    from .output import setup_logging

    setup_logging()
    try:
        app()
    except ArrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # `python -m arretrieve.cli.app`, e.g. under torchrun
    main()
