"""The encoding path every command shares: `load_embedder(entry)` then `embedder.encode(texts, role)`."""

from __future__ import annotations

from ..registry.model_entry import ModelEntry
from .device import resolve_device, resolve_dtype
from .embedder import Embedder, EncodeStats


def load_embedder(entry: ModelEntry, device: str = "auto", dtype: str | None = None) -> Embedder:
    """An embedder for a registry entry; `dtype` overrides the entry's dtype (`auto` by default)."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype or entry.dtype, torch_device)
    if entry.kind == "sentence-transformers":
        from .sentence_transformer_embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(entry, torch_device, torch_dtype)
    from ..modeling.loading import load_autoregembed
    from .autoregembed_embedder import AutoRegEmbedEmbedder

    model = load_autoregembed(entry, torch_dtype, torch_device)
    return AutoRegEmbedEmbedder(entry, model, torch_device, torch_dtype)


__all__ = ["Embedder", "EncodeStats", "load_embedder"]
