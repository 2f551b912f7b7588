"""Shared console helpers for the CLI."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console
from rich.markup import escape

# Data (ids, titles, snippets, paths, messages) is never read as rich markup: markup is off unless
# a call asks for it, and such calls escape what they interpolate (`escape`).
# Piped output is not cut to 80 columns: tables stay greppable and whole.
console = Console(soft_wrap=False, markup=False)
if not console.is_terminal:
    console = Console(width=160, markup=False)
err_console = Console(stderr=True, markup=False)


class _WarningLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        err_console.print(f"[yellow]{level}:[/] {escape(record.getMessage())}", highlight=False, markup=True)


def setup_logging() -> None:
    if not sys.stderr.isatty():  # a log file or a pipe: third-party bars would fill it with \r lines
        for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
            os.environ.setdefault(variable, "1")
    logger = logging.getLogger("arretrieve")
    logger.setLevel(logging.INFO)
    logger.handlers[:] = [_WarningLine()]
    logger.propagate = False


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """'2GB', '500 MiB', '1e9' → bytes."""
    from arretrieve.errors import ArrError

    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGTIB")
    unit = cleaned[len(number):]
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        raise ArrError(f"cannot read the size {text!r}; write e.g. 2GB or 500MiB") from None
    return int(value)
