"""Embedder for `autoregembed` entries: compress tokens, mean-pooled, L2-normalised."""

from __future__ import annotations

from typing import Sequence

import torch

from ..modeling.autoregembed_model import AutoRegEmbedModel
from ..modeling.traced import TracedEncoder
from ..registry.model_entry import ModelEntry
from .embedder import Embedder


class AutoRegEmbedEmbedder(Embedder):
    truncation_note = "their text was cut, the prompt and compress tokens kept"

    def __init__(self, entry: ModelEntry, model: AutoRegEmbedModel | TracedEncoder, device: torch.device,
                 dtype: torch.dtype):
        super().__init__(entry, device, dtype)
        self.model = model

    @property
    def dim(self) -> int:
        return self.model.hidden_size

    def prepare(self, texts: Sequence[str], role: str):
        encoded = self.model.encode_texts(texts, self.entry.template(role))
        return encoded.input_ids, [len(ids) for ids in encoded.input_ids], encoded.truncated

    def embed_batch(self, items: list[list[int]]) -> torch.Tensor:
        input_ids, lengths = self.model.pad(items)
        return self.model.embed(input_ids, lengths, self.entry.pooling)
