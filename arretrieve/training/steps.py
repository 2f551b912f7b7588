"""One training step's loss per objective, over the collated batches of `batches.py`."""

from __future__ import annotations

import torch

from ..modeling.autoregembed_model import AutoRegEmbedModel
from .config import TrainConfig
from .losses import alignment_loss, compression_loss, info_nce_loss


def _trim(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return ids[:, : int(lengths.max())]


def compression_step(model: AutoRegEmbedModel, batch: dict, config: TrainConfig) -> torch.Tensor:
    compressed = model.compress(batch["input_ids"], batch["lengths"])
    summed = model.score_padded(compressed, batch["targets"], batch["target_lengths"])
    return compression_loss(summed, batch["target_lengths"])


def alignment_log_probs(model: AutoRegEmbedModel, batch: dict, passes: str = "batched"):
    """a = π(pos|e_q) (B,), b = π(pos|e_pos) (B,), c = π(neg_j|e_q) (B, n).

    batched: 2 encoder passes (queries once, reused for the negatives; positives) and 2 decoder
    passes (the two scorings of the positive share their targets, so they run as one pass of 2B
    with no extra padding; the negatives). Each pass keeps texts of one kind together, so short
    queries are never padded to document length.
    sequential: the reference code's structure, 3 encoder and 3 decoder passes.
    """
    batch_size = batch["encoder_ids"].shape[0] // 2
    n = batch["targets"].shape[0] // batch_size - 2
    ids, lengths = batch["encoder_ids"], batch["encoder_lengths"]
    targets, target_lengths = batch["targets"], batch["target_lengths"]
    q_ids, q_lengths = _trim(ids[:batch_size], lengths[:batch_size]), lengths[:batch_size]
    p_ids, p_lengths = _trim(ids[batch_size:], lengths[batch_size:]), lengths[batch_size:]
    pos_t, pos_l = _trim(targets[:batch_size], target_lengths[:batch_size]), target_lengths[:batch_size]
    neg_t, neg_l = _trim(targets[2 * batch_size :], target_lengths[2 * batch_size :]), target_lengths[2 * batch_size :]
    if passes == "batched":
        e_q = model.compress(q_ids, q_lengths)
        e_pos = model.compress(p_ids, p_lengths)
        both = model.score_padded(torch.cat([e_q, e_pos]), pos_t.repeat(2, 1), pos_l.repeat(2))
        c = model.score_padded(torch.cat([e_q] * n), neg_t, neg_l).view(n, batch_size).T
        return both[:batch_size], both[batch_size:], c
    a = model.score_padded(model.compress(q_ids, q_lengths), pos_t, pos_l)
    b = model.score_padded(model.compress(p_ids, p_lengths), pos_t, pos_l)
    e_q = model.compress(q_ids, q_lengths)
    c = model.score_padded(torch.cat([e_q] * n), neg_t, neg_l).view(n, batch_size).T
    return a, b, c


def alignment_step(model: AutoRegEmbedModel, batch: dict, config: TrainConfig) -> torch.Tensor:
    a, b, c = alignment_log_probs(model, batch, config.passes)
    reference = batch["reference"].to(a.dtype)
    return alignment_loss(a, b, c, reference[:, 0], reference[:, 1:], config.beta, config.tau, config.reference_form)


def contrastive_step(model: AutoRegEmbedModel, batch: dict, config: TrainConfig) -> torch.Tensor:
    """InfoNCE with one encoder pass per kind of text (queries are never padded to document length)."""
    batch_size = batch["encoder_ids"].shape[0] // 2
    ids, lengths = batch["encoder_ids"], batch["encoder_lengths"]
    queries = model.embed(_trim(ids[:batch_size], lengths[:batch_size]), lengths[:batch_size], config.pooling)
    positives = model.embed(_trim(ids[batch_size:], lengths[batch_size:]), lengths[batch_size:], config.pooling)
    negatives = model.embed(_trim(batch["negative_ids"], batch["negative_lengths"]), batch["negative_lengths"], config.pooling)
    n = negatives.shape[0] // batch_size
    negatives = negatives.view(n, batch_size, -1).transpose(0, 1)
    return info_nce_loss(queries, positives, negatives, config.temperature, config.in_batch_negatives)


@torch.no_grad()
def reference_log_probs(model: AutoRegEmbedModel, batch: dict) -> torch.Tensor:
    """(B, 1 + n): π_ref(pos | e_q) then π_ref(neg_j | e_q), from the stage-1 model."""
    batch_size = batch["encoder_ids"].shape[0] // 2
    n = batch["targets"].shape[0] // batch_size - 2
    q_ids, q_lengths = _trim(batch["encoder_ids"][:batch_size], batch["encoder_lengths"][:batch_size]), batch["encoder_lengths"][:batch_size]
    e_q = model.compress(q_ids, q_lengths)
    keep = torch.cat([torch.arange(batch_size), torch.arange(2 * batch_size, (2 + n) * batch_size)])
    targets, lengths = batch["targets"][keep], batch["target_lengths"][keep]
    summed = model.score_padded(torch.cat([e_q] * (1 + n)), _trim(targets, lengths), lengths)
    return summed.view(1 + n, batch_size).T.float()
