"""Encoding text to vectors: `load_embedder(entry)` then `embedder.encode(texts, role)` for batches,
and `encode_corpus` for a whole corpus as a sharded, resumable, cached job (`corpus_job`).

Importing this package does not import torch (the index code imports `corpus_job`); the model
code loads when an embedder is made.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..registry.model_entry import ModelEntry
from .corpus_job import EncodeJob, EncodingOptions, encode_corpus

if TYPE_CHECKING:
    from .embedder import Embedder

log = logging.getLogger(__name__)


def load_embedder(entry: ModelEntry | str | None = None, device: str = "auto", dtype: str | None = None,
                  traced: bool = False) -> Embedder:
    """An embedder (`encode`, `encode_query`, `encode_document`, `similarity`) for a registry entry
    or name (default: the registry's default); `dtype` overrides the entry's dtype (`auto` by
    default). `traced`: on a CPU, run an AutoRegEmbed model's cached traced encoder, which loads
    without importing transformers (a cold search's start), writing it on the first load; same
    vectors (arretrieve.modeling.traced)."""
    from ..runtime import resolve_device, resolve_dtype

    if not isinstance(entry, ModelEntry):
        from ..registry import Registry

        entry = Registry().resolve(entry)

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype or entry.dtype, torch_device)
    if entry.kind == "sentence-transformers":
        from .sentence_transformer_embedder import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(entry, torch_device, torch_dtype)
    from .autoregembed_embedder import AutoRegEmbedEmbedder

    traced = traced and torch_device.type == "cpu"
    if traced:
        from ..modeling.traced import load_traced

        encoder = load_traced(entry, torch_dtype)
        if encoder is not None:
            return AutoRegEmbedEmbedder(entry, encoder, torch_device, torch_dtype)
    from ..modeling.loading import load_autoregembed

    if traced:  # the slow first search: say why it is slow, once
        log.warning("first search with %s: building its fast query encoder (once per model and dtype)", entry.name)
        started = time.monotonic()
    model = load_autoregembed(entry, torch_dtype, torch_device)
    if traced:
        from ..modeling.traced import save_traced

        if save_traced(model, entry, torch_dtype):
            log.warning("fast query encoder of %s built in %.0f s; later searches load it", entry.name,
                        time.monotonic() - started)
    return AutoRegEmbedEmbedder(entry, model, torch_device, torch_dtype)


__all__ = ["EncodeJob", "EncodingOptions", "encode_corpus", "load_embedder"]
