"""arretrieve: AutoRegEmbed LLM embedders, FAISS indexes and BEIR evaluation behind one CLI, `arr`.

Importing the package is cheap; heavy libraries (torch, transformers, faiss) load inside the
functions that need them.
"""

__version__ = "0.1.0"

# The Python API (see `arretrieve.api`), imported on first use so `import arretrieve` stays cheap.
_API = {"Index": "api", "encode": "api", "Hit": "index", "load_embedder": "encoding", "Registry": "registry",
        "similarity": "encoding.embedder"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'arretrieve' has no attribute {name!r}")
