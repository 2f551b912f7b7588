"""The encoding loop every command uses: length-sorted batches, OOM back-off, progress, input order out."""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..corpus.document import not_text
from ..errors import ArrError
from ..registry.model_entry import PROMPT_ROLES, ModelEntry
from ..runtime import progress_bar

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass
class EncodeStats:
    texts: int = 0
    truncated: int = 0
    final_batch_size: int = 0
    truncated_examples: list[int] = field(default_factory=list)


def similarity(a, b) -> np.ndarray | torch.Tensor:
    """Cosine similarity of every vector of `a` with every vector of `b`: (len a, len b), a 1-D
    input counting as one vector (sentence-transformers' `similarity`); a tensor if either is one."""
    as_tensor = isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor)
    rows = [np.atleast_2d(np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float32))
            for x in (a, b)]
    if rows[0].ndim != 2 or rows[1].ndim != 2 or rows[0].shape[1] != rows[1].shape[1]:
        raise ArrError(f"similarity needs vectors of one dimension, not shapes {rows[0].shape} and {rows[1].shape}")
    left, right = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) for x in rows)
    scores = left @ right.T
    return torch.from_numpy(scores) if as_tensor else scores


class Embedder(ABC):
    """Turns texts into float32 numpy vectors for one registry entry on one device and dtype."""

    # How over-long texts are shortened, for the warning that reports them.
    truncation_note = "their ends were cut"

    def __init__(self, entry: ModelEntry, device: torch.device, dtype: torch.dtype):
        self.entry = entry
        self.device = device
        self.dtype = dtype
        self.last_stats = EncodeStats()

    @property
    def dim(self) -> int:
        return self.entry.dim

    @abstractmethod
    def prepare(self, texts: Sequence[str], role: str) -> tuple[list[Any], list[int], list[bool]]:
        """Per text: the model input, its length in tokens (for sorting) and whether it was truncated."""

    @abstractmethod
    def embed_batch(self, items: list[Any]) -> torch.Tensor:
        """(B, dim) float32 embeddings for prepared items."""

    # Whether the model itself L2-normalises its vectors (sentence-transformers entries say).
    normalized = True

    def encode(
        self,
        texts: str | Sequence[str],
        role: str = "document",
        batch_size: int = 32,
        show_progress_bar: bool = False,
        on_progress: Callable[[int], None] | None = None,
        *,
        normalize_embeddings: bool | None = None,
        convert_to_tensor: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Float32 vectors in input order, as sentence-transformers' `encode` gives them: (N, dim)
        for a list, (dim,) for one string; a torch tensor with `convert_to_tensor`.
        `normalize_embeddings`: None gives the vectors as the entry makes them (what its indexes
        hold), True L2-normalises them, False is refused where the model normalises them itself.
        `on_progress(n)` hears of every n texts done; `show_progress_bar` draws a bar instead."""
        single = isinstance(texts, str)
        if normalize_embeddings is False and self.normalized:
            raise ArrError(f"the vectors of {self.entry.name!r} are L2-normalised by the model (its indexes hold them "
                           "so); normalize_embeddings=False cannot be honoured")
        vectors = self._encode([texts] if single else list(texts), role, batch_size, show_progress_bar, on_progress)
        if normalize_embeddings and not self.normalized:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        vectors = vectors[0] if single else vectors
        return torch.from_numpy(vectors) if convert_to_tensor else vectors

    def encode_query(self, texts: str | Sequence[str], **options) -> np.ndarray | torch.Tensor:
        return self.encode(texts, role="query", **options)

    def encode_document(self, texts: str | Sequence[str], **options) -> np.ndarray | torch.Tensor:
        return self.encode(texts, role="document", **options)

    @staticmethod
    def similarity(a, b) -> np.ndarray | torch.Tensor:
        return similarity(a, b)

    def _encode(self, texts: list[str], role: str, batch_size: int, show_progress: bool,
                on_progress: Callable[[int], None] | None) -> np.ndarray:
        if role not in PROMPT_ROLES:
            raise ArrError(f"unknown role {role!r}; known: {', '.join(PROMPT_ROLES)}")
        if batch_size < 1:
            raise ArrError("batch size must be at least 1")
        for number, text in enumerate(texts, start=1):
            problem = not_text(text) if isinstance(text, str) else "is not a string"
            if problem:
                raise ArrError(f"text {number} {problem}")
        output = np.zeros((len(texts), self.dim), dtype=np.float32)
        self.last_stats = EncodeStats(texts=len(texts), final_batch_size=batch_size)
        if not texts:
            return output
        items, lengths, truncated = self.prepare(texts, role)
        self.last_stats.truncated = sum(truncated)
        self.last_stats.truncated_examples = [i for i, cut in enumerate(truncated) if cut][:5]
        if self.last_stats.truncated:
            # Words per chunk that fit: a token is about 0.75 English words; half the limit leaves room.
            chunking = (f"; `arr index --chunk-words {max(self.entry.max_length // 2, 1)}` indexes every part of "
                        "long documents instead" if role == "document" else "")
            log.warning(
                "%d of %d texts were longer than max_length=%d tokens; %s%s",
                self.last_stats.truncated, len(texts), self.entry.max_length, self.truncation_note, chunking,
            )
        # Longest first: an out-of-memory shows up on the first batch, not after an hour.
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        progress = progress_bar() if show_progress and len(texts) > batch_size else None
        start = 0
        with torch.inference_mode(), (progress or contextlib.nullcontext()):
            if progress:
                task = progress.add_task("encoding", total=len(texts))
                on_progress = lambda done: progress.update(task, advance=done)  # noqa: E731
            while start < len(order):
                chunk = order[start : start + batch_size]
                try:
                    vectors = self.embed_batch([items[i] for i in chunk])
                except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled here
                    if not is_out_of_memory(exc):
                        raise
                    if batch_size == 1:
                        raise ArrError(f"out of memory encoding a single text of {lengths[chunk[0]]} tokens on {self.device}") from None
                    batch_size //= 2
                    self.last_stats.final_batch_size = batch_size
                    log.warning("out of memory on %s; retrying with batch size %d", self.device, batch_size)
                    if self.device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                output[chunk] = vectors.float().cpu().numpy()
                start += len(chunk)
                if on_progress:
                    on_progress(len(chunk))
        return output
