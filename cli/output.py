"""Shared console helpers for the CLI."""

from __future__ import annotations

import logging

from rich.console import Console

# Piped output is not cut to 80 columns: tables stay greppable and whole.
console = Console(soft_wrap=False)
if not console.is_terminal:
    console = Console(width=160)
err_console = Console(stderr=True)


class _WarningLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.WARNING else "info"
        err_console.print(f"[yellow]{level}:[/] {record.getMessage()}", highlight=False, markup=True)


def setup_logging() -> None:
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
