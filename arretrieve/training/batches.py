"""Pre-tokenised training sets and the collators that pad them for one step.

Every text is tokenised once, up front, so truncation is counted (and reported) before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from ..modeling.autoregembed_model import AutoRegEmbedModel, right_pad
from ..registry.model_entry import split_template
from .data import CompressionExample, Triplet


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
    """Stage 2 and the contrastive baseline: query, positive and negatives, tokenised for both sides."""

    def __init__(self, model: AutoRegEmbedModel, triplets: list[Triplet], query_template: str, doc_template: str,
                 max_target_length: int, query_targets: bool = False):
        count, n = len(triplets), len(triplets[0].negs)
        queries = model.encode_texts([t.query for t in triplets], query_template)
        positives = model.encode_texts([t.pos for t in triplets], doc_template)
        negatives = model.encode_texts([neg for t in triplets for neg in t.negs], doc_template)
        pos_targets = model.encode_targets([t.pos for t in triplets], max_target_length)
        # Each query as a decoder target after its positive's states, for contrastive+compression only
        # (tokenised and counted as cut only where it is scored).
        query_targets = model.encode_targets([t.query for t in triplets] if query_targets else [], max_target_length)
        neg_targets = model.encode_targets([neg for t in triplets for neg in t.negs], max_target_length)
        self.queries, self.positives = queries.input_ids, positives.input_ids
        self.negatives = [negatives.input_ids[i * n : (i + 1) * n] for i in range(count)]
        self.pos_targets, self.query_targets = pos_targets.input_ids, query_targets.input_ids or None
        self.neg_targets = [neg_targets.input_ids[i * n : (i + 1) * n] for i in range(count)]
        self.truncation = Truncation(
            sum(queries.truncated) + sum(positives.truncated) + sum(negatives.truncated),
            sum(pos_targets.truncated) + sum(neg_targets.truncated) + sum(query_targets.truncated),
        )
        self.num_negatives = n
        self.reference: torch.Tensor | None = None  # (N, 1 + n) once computed
        self.lengths = [len(q) + len(p) + len(t) + sum(map(len, negs)) + sum(map(len, neg_t)) for q, p, t, negs, neg_t in
                        zip(self.queries, self.positives, self.pos_targets, self.negatives, self.neg_targets)]

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {"query": self.queries[index], "pos": self.positives[index], "negs": self.negatives[index],
                "pos_target": self.pos_targets[index], "neg_targets": self.neg_targets[index]}
        if self.query_targets is not None:
            item["query_target"] = self.query_targets[index]
        if self.reference is not None:
            item["reference"] = self.reference[index]
        return item


def prompt_template(entry_prompts: dict[str, str], role: str) -> str:
    template = entry_prompts.get(role, "{text}")
    split_template(template)  # validates
    return template


class CompressionCollator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, lengths = right_pad([i["input"] for i in items], self.pad_id)
        targets, target_lengths = right_pad([i["target"] for i in items], self.pad_id)
        return {"input_ids": input_ids, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}


class TripletCollator:
    """Queries then positives for the encoder; decoder targets ordered [pos | pos | neg_1 | … | neg_n], and
    the queries as targets apart where the set has them."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        n = len(items[0]["negs"])
        encoder_ids, encoder_lengths = right_pad([i["query"] for i in items] + [i["pos"] for i in items], self.pad_id)
        negatives = [i["negs"][j] for j in range(n) for i in items]
        negative_ids, negative_lengths = right_pad(negatives, self.pad_id)
        targets = [i["pos_target"] for i in items] * 2 + [i["neg_targets"][j] for j in range(n) for i in items]
        target_ids, target_lengths = right_pad(targets, self.pad_id)
        batch = {"encoder_ids": encoder_ids, "encoder_lengths": encoder_lengths, "negative_ids": negative_ids,
                 "negative_lengths": negative_lengths, "targets": target_ids, "target_lengths": target_lengths}
        if "query_target" in items[0]:
            batch["query_targets"], batch["query_target_lengths"] = right_pad([i["query_target"] for i in items], self.pad_id)
        if "reference" in items[0]:
            batch["reference"] = torch.stack([torch.as_tensor(i["reference"]) for i in items])
        return batch
