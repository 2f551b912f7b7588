"""`arr serve` (app.py: the FastAPI application, ServedIndexes) and its limits (limits.py).

The app is imported on first use, so that the limits (the CLI's flags) need no FastAPI installed.
"""

import importlib

from .limits import LOOPBACK, TOKEN_VARIABLE, ServerLimits

_APP_NAMES = ("ServedIndexes", "create_app", "public_message", "serve")

__all__ = ["LOOPBACK", "TOKEN_VARIABLE", "ServerLimits", *_APP_NAMES]


def __getattr__(name: str):
    if name in _APP_NAMES:
        return getattr(importlib.import_module(".app", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
