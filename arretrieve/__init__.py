"""arretrieve: AutoRegEmbed LLM embedders, FAISS indexes and BEIR evaluation behind one CLI, `arr`.

Importing the package is cheap; heavy libraries (torch, transformers, faiss) load inside the
functions that need them.
"""

__version__ = "0.1.0"
