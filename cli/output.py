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
