"""Registry models as sentence-transformers folders: `SentenceTransformer(folder, trust_remote_code=True)`
gives arretrieve's vectors.

An AutoRegEmbed folder is a plain transformers model (LoRA merged, the compress tokens added to the
tokenizer and their rows written into the input embeddings) plus one module, `AutoRegEmbedEncoder`,
whose code (autoregembed_encoder.py, torch, transformers and sentence-transformers only) the folder
carries, so it loads where arretrieve is not installed. Folders exported before it name this
module's path instead; the name stays for them. The folders are written by export/sentence_transformers.py.
"""

from __future__ import annotations

from ..errors import ArrError

try:
    from sentence_transformers.base.modules.input_module import InputModule  # noqa: F401 (the version check)
except ImportError:
    raise ArrError("sentence-transformers folders need sentence-transformers >= 6: pip install 'arretrieve[interop]'") from None
from .autoregembed_encoder import AutoRegEmbedEncoder

# `encode` without a prompt encodes as arretrieve does by default: as a document.
DEFAULT_PROMPT = "document"
# The prompts a folder exposes: the roles a user encodes with (the others are training's).
EXPORTED_ROLES = ("query", "document", "symmetric")

__all__ = ["DEFAULT_PROMPT", "EXPORTED_ROLES", "AutoRegEmbedEncoder"]
