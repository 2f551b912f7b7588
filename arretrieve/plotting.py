"""matplotlib, an optional dependency (the `plots` extra): for beir-eval's chart and training's loss plots."""

from __future__ import annotations

import importlib.util

from .errors import ArrError

MISSING = "plots need matplotlib: pip install 'arretrieve[plots]'"


def plots_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def pyplot():
    """pyplot on the file-only Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ArrError(MISSING) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
