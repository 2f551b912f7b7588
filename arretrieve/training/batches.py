"""Pre-tokenised training sets and the collators that pad them for one step.

Every text is tokenised once, up front, so truncation is counted (and reported) before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from ..modeling.autoregembed_model import AutoRegEmbedModel, right_pad
from .data import CompressionExample, Triplet
from .objectives import NEGATIVE_INPUTS, NEGATIVE_TARGETS, POSITIVE_TARGETS, QUERY_TARGETS


@dataclass
class Truncation:
    inputs: int = 0
    targets: int = 0


class CompressionSet(Dataset):
    """Stage 1: encoder reads `[BOS] context \\n instruction \\n <EMBED…>`; decoder target `output + EOS`."""

    def __init__(self, model: AutoRegEmbedModel, examples: list[CompressionExample], max_target_length: int):
        inputs = model.encode_parts([e.context for e in examples], [""] * len(examples),
                                    ["\n" + e.instruction + "\n" for e in examples])
        targets = model.encode_targets([e.output for e in examples], max_target_length)
        self.inputs, self.targets = inputs.input_ids, targets.input_ids
        self.truncation = Truncation(sum(inputs.truncated), sum(targets.truncated))
        # Tokens per example, for length-grouped batches (less padding).
        self.lengths = [len(i) + len(t) for i, t in zip(self.inputs, self.targets)]

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input": self.inputs[index], "target": self.targets[index]}


class TripletSet(Dataset):
    """Stage 2 and the contrastive objectives: each query and positive tokenised for the encoder, and
    only what the stage's active terms read besides (`needs`, objectives.batch_needs): the negatives
    for the encoder, the positives, negatives or queries as decoder targets. What is not tokenised is
    neither padded nor counted as cut, nor counted in the lengths that group batches."""

    def __init__(self, model: AutoRegEmbedModel, triplets: list[Triplet], query_template: str, doc_template: str,
                 max_target_length: int, needs: frozenset[str]):
        count, n = len(triplets), len(triplets[0].negs)
        negative_texts = [neg for t in triplets for neg in t.negs]
        queries = model.encode_texts([t.query for t in triplets], query_template)
        positives = model.encode_texts([t.pos for t in triplets], doc_template)
        parts = {"query": queries, "pos": positives}
        if NEGATIVE_INPUTS in needs:
            parts["negs"] = model.encode_texts(negative_texts, doc_template)
        if POSITIVE_TARGETS in needs:
            parts["pos_target"] = model.encode_targets([t.pos for t in triplets], max_target_length)
        if NEGATIVE_TARGETS in needs:
            parts["neg_targets"] = model.encode_targets(negative_texts, max_target_length)
        if QUERY_TARGETS in needs:
            parts["query_target"] = model.encode_targets([t.query for t in triplets], max_target_length)
        self.columns = {key: part.input_ids if key not in ("negs", "neg_targets") else
                        [part.input_ids[i * n : (i + 1) * n] for i in range(count)] for key, part in parts.items()}
        targets = {"pos_target", "neg_targets", "query_target"}
        self.truncation = Truncation(sum(sum(p.truncated) for key, p in parts.items() if key not in targets),
                                     sum(sum(p.truncated) for key, p in parts.items() if key in targets))
        self.num_negatives = n
        self.reference: torch.Tensor | None = None  # (N, 1 + n) once computed
        self.lengths = [sum(len(ids) if key not in ("negs", "neg_targets") else sum(map(len, ids))
                            for key, ids in row.items()) for row in (self._row(i) for i in range(count))]

    def _row(self, index: int) -> dict[str, Any]:
        return {key: column[index] for key, column in self.columns.items()}

    def __len__(self) -> int:
        return len(self.columns["query"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._row(index)
        if self.reference is not None:
            item["reference"] = self.reference[index]
        return item


class CompressionCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, lengths = right_pad([i["input"] for i in items], self.pad_id)
        targets, target_lengths = right_pad([i["target"] for i in items], self.pad_id)
        return {"input_ids": input_ids, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}


class TripletCollator:
    """Queries then positives for the encoder; and what the items carry: the negatives for the
    encoder, the decoder targets ordered [pos | neg_1 | … | neg_n] (negatives by index, then row), the
    queries as targets, the reference scores."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        first = items[0]
        encoder_ids, encoder_lengths = right_pad([i["query"] for i in items] + [i["pos"] for i in items], self.pad_id)
        batch = {"encoder_ids": encoder_ids, "encoder_lengths": encoder_lengths}
        if "negs" in first:
            batch["negative_ids"], batch["negative_lengths"] = right_pad(
                [i["negs"][j] for j in range(len(first["negs"])) for i in items], self.pad_id)
        targets = [i["pos_target"] for i in items] if "pos_target" in first else []
        if "neg_targets" in first:
            targets += [i["neg_targets"][j] for j in range(len(first["neg_targets"])) for i in items]
        if targets:
            batch["targets"], batch["target_lengths"] = right_pad(targets, self.pad_id)
        if "query_target" in first:
            batch["query_targets"], batch["query_target_lengths"] = right_pad([i["query_target"] for i in items], self.pad_id)
        if "reference" in first:
            batch["reference"] = torch.stack([torch.as_tensor(i["reference"]) for i in items])
        return batch
