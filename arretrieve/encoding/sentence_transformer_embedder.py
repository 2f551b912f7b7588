"""Embedder for `sentence-transformers` entries (classic embedders such as all-MiniLM-L6-v2)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..modeling.backbone import call_loader, local_folder
from ..errors import ArrError
from ..registry.model_entry import ModelEntry, split_template
from .embedder import Embedder


class SentenceTransformerEmbedder(Embedder):
    def __init__(self, entry: ModelEntry, device: torch.device, dtype: torch.dtype):
        super().__init__(entry, device, dtype)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ArrError(
                f"model {entry.name!r} needs sentence-transformers: pip install 'arretrieve[baselines]'"
            ) from None
        location = local_folder(entry.base, entry.base_sha256)
        self.model = call_loader(
            SentenceTransformer,
            location,
            device=str(device),
            revision=entry.revision,
            trust_remote_code=entry.trust_remote_code,
            model_kwargs={"dtype": dtype},
        )
        self.model.max_seq_length = entry.max_length
        self.tokenizer = self.model.tokenizer
        self.normalized = entry.normalize

    @property
    def dim(self) -> int:
        return self.model.get_embedding_dimension()

    def prepare(self, texts: Sequence[str], role: str):
        prefix, suffix = split_template(self.entry.template(role))
        wrapped = [prefix + text + suffix for text in texts]
        lengths = [len(ids) for ids in self.tokenizer(wrapped, add_special_tokens=True)["input_ids"]]
        return wrapped, lengths, [n > self.entry.max_length for n in lengths]

    def embed_batch(self, items: list[str]) -> torch.Tensor:
        return self.model.encode(
            items,
            batch_size=len(items),
            convert_to_tensor=True,
            normalize_embeddings=self.entry.normalize,
            show_progress_bar=False,
        )
