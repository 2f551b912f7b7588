"""The loss terms of each stage (training/objectives.py names them), over the collated batches of
`batches.py`, and `stage_loss`, their weighted sum: one training step's loss."""

from __future__ import annotations

import torch

from ..modeling.autoregembed_model import AutoRegEmbedModel
from .config import TrainConfig
from .losses import alignment_loss, compression_loss, info_nce_loss
from .objectives import Stage, active_terms


def stage_loss(stage: Stage, model: AutoRegEmbedModel, batch: dict, config: TrainConfig,
               reference_model: AutoRegEmbedModel | None = None) -> torch.Tensor:
    """Σ weight × term over the stage's active terms, in the record's order."""
    terms = active_terms(stage, config)
    extra = {} if reference_model is None else {"reference_model": reference_model}  # in-batch alignment only
    values = _COMPUTE[stage.compute](model, batch, config, {t.name for t in terms}, **extra)
    loss = None
    for term in terms:
        value = values[term.name] if term.weight is None else getattr(config, term.weight) * values[term.name]
        loss = value if loss is None else loss + value
    return loss


def _trim(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return ids[:, : int(lengths.max())]


def decoder_loss(model: AutoRegEmbedModel, states: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Stage 1's loss: the frozen decoder's token-level cross-entropy on right-padded targets after the states."""
    return compression_loss(model.score_padded(states, _trim(targets, lengths), lengths), lengths)


def compression_terms(model: AutoRegEmbedModel, batch: dict, config: TrainConfig, active: set[str]) -> dict[str, torch.Tensor]:
    """Stage 1: the frozen decoder generates each row's output from its context's compress states."""
    states = model.compress(batch["input_ids"], batch["lengths"])
    return {"compression": decoder_loss(model, states, batch["targets"], batch["target_lengths"])}


def alignment_log_probs(model: AutoRegEmbedModel, batch: dict, passes: str = "batched"):
    """a = π(pos|e_q) (B,), b = π(pos|e_pos) (B,), c = π(neg_j|e_q) (B, n), and the states e_q, e_pos (B, k, H).

    batched: 2 encoder passes (queries once, reused for the negatives; positives) and 2 decoder
    passes (the two scorings of the positive share their targets, so they run as one pass of 2B
    with no extra padding; the negatives). Each pass keeps texts of one kind together, so short
    queries are never padded to document length.
    sequential: the reference code's structure, 3 encoder and 3 decoder passes.
    """
    batch_size = batch["encoder_ids"].shape[0] // 2
    n = batch["targets"].shape[0] // batch_size - 1
    (q_ids, q_lengths), (p_ids, p_lengths) = _encoder_inputs(batch)
    targets, target_lengths = batch["targets"], batch["target_lengths"]
    pos_t, pos_l = _trim(targets[:batch_size], target_lengths[:batch_size]), target_lengths[:batch_size]
    neg_t, neg_l = _trim(targets[batch_size:], target_lengths[batch_size:]), target_lengths[batch_size:]
    if passes == "batched":
        e_q = model.compress(q_ids, q_lengths)
        e_pos = model.compress(p_ids, p_lengths)
        both = model.score_padded(torch.cat([e_q, e_pos]), pos_t.repeat(2, 1), pos_l.repeat(2))
        c = model.score_padded(torch.cat([e_q] * n), neg_t, neg_l).view(n, batch_size).T
        return both[:batch_size], both[batch_size:], c, e_q, e_pos
    a = model.score_padded(model.compress(q_ids, q_lengths), pos_t, pos_l)
    e_pos = model.compress(p_ids, p_lengths)
    b = model.score_padded(e_pos, pos_t, pos_l)
    e_q = model.compress(q_ids, q_lengths)
    c = model.score_padded(torch.cat([e_q] * n), neg_t, neg_l).view(n, batch_size).T
    return a, b, c, e_q, e_pos


def _encoder_inputs(batch: dict):
    batch_size = batch["encoder_ids"].shape[0] // 2
    ids, lengths = batch["encoder_ids"], batch["encoder_lengths"]
    return ((_trim(ids[:batch_size], lengths[:batch_size]), lengths[:batch_size]),
            (_trim(ids[batch_size:], lengths[batch_size:]), lengths[batch_size:]))


def _batch_targets(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Every target of the batch once: the B positives, then the B·n negatives (the collator's order)."""
    return _trim(batch["targets"], batch["target_lengths"]), batch["target_lengths"]


def score_all_targets(model: AutoRegEmbedModel, states: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T): π(target_t | states_i) for every state/target pair of the batch."""
    batch_size, count = states.shape[0], targets.shape[0]
    summed = model.score_padded(states.repeat_interleave(count, 0), targets.repeat(batch_size, 1), lengths.repeat(batch_size))
    return summed.view(batch_size, count)


def split_own(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) scores whose column i is row i's own positive → (own (B,), the others (B, T-1))."""
    own = torch.zeros_like(scores, dtype=torch.bool)
    own[torch.arange(scores.shape[0]), torch.arange(scores.shape[0])] = True
    return scores[own], scores[~own].view(scores.shape[0], -1)


def in_batch_alignment_parts(model: AutoRegEmbedModel, reference_model: AutoRegEmbedModel, batch: dict):
    """Conditional distribution alignment with in-batch negatives: each query's states score every
    target of the batch (its positive; the other queries' positives and every hard negative as
    negatives). The reference term of each pair is the stage-1 model's score of that same pair,
    computed on the fly without gradient (precomputed scores cover only a row's own targets).
    Returns a, b, c (B, T-1), ref_pos, ref_neg (B, T-1) and the states e_q, e_pos."""
    (q_ids, q_lengths), (p_ids, p_lengths) = _encoder_inputs(batch)
    batch_size = q_ids.shape[0]
    targets, lengths = _batch_targets(batch)
    e_q, e_pos = model.compress(q_ids, q_lengths), model.compress(p_ids, p_lengths)
    a, c = split_own(score_all_targets(model, e_q, targets, lengths))
    b = model.score_padded(e_pos, targets[:batch_size], lengths[:batch_size])
    with torch.no_grad():
        ref_pos, ref_neg = split_own(score_all_targets(reference_model, reference_model.compress(q_ids, q_lengths), targets, lengths))
    return a, b, c, ref_pos, ref_neg, e_q, e_pos


def alignment_terms(model: AutoRegEmbedModel, batch: dict, config: TrainConfig, active: set[str],
                    reference_model: AutoRegEmbedModel | None = None) -> dict[str, torch.Tensor]:
    """The alignment loss (own hard negatives with precomputed reference scores, or in-batch
    negatives against `reference_model`) and, where active, InfoNCE on the pooled states."""
    if config.in_batch_alignment:
        a, b, c, ref_pos, ref_neg, e_q, e_pos = in_batch_alignment_parts(model, reference_model, batch)
    else:
        a, b, c, e_q, e_pos = alignment_log_probs(model, batch, config.passes)
        reference = batch["reference"].to(a.dtype)
        ref_pos, ref_neg = reference[:, 0], reference[:, 1:]
    terms = {"alignment": alignment_loss(a, b, c, ref_pos.to(a.dtype), ref_neg.to(a.dtype), config.beta, config.tau,
                                         config.reference_form)}
    if "infonce" in active:
        terms["infonce"] = pooled_info_nce(model, batch, e_q, e_pos, config)
    return terms


def pooled_info_nce(model: AutoRegEmbedModel, batch: dict, e_q: torch.Tensor, e_pos: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """InfoNCE on the pooled AutoRegEmbed vectors the index will use: each encoder text (a document,
    in the paper's orientation) against its positive's vector, the hard negatives' vectors (one more
    encoder pass, the negatives in the positive's prompt) and, with in-batch negatives, the others'."""
    batch_size = e_q.shape[0]
    negatives = model.embed(_trim(batch["negative_ids"], batch["negative_lengths"]), batch["negative_lengths"])
    negatives = negatives.view(-1, batch_size, negatives.shape[-1]).transpose(0, 1)
    return info_nce_loss(model.pool(e_q), model.pool(e_pos), negatives, config.temperature, config.in_batch_negatives)


def contrastive_terms(model: AutoRegEmbedModel, batch: dict, config: TrainConfig, active: set[str]) -> dict[str, torch.Tensor]:
    """InfoNCE with one encoder pass per kind of text (queries are never padded to document length)
    and, where active, stage 1's decoder losses on the same compress states: the frozen decoder
    generates each query from its positive document's states (compression), rebuilds the document
    from its states (reconstruction) and the query from its own (query_reconstruction), so the
    vectors that retrieve stay readable by the decoder (InfoNCE alone lets them drift from it)."""
    (q_ids, q_lengths), (p_ids, p_lengths) = _encoder_inputs(batch)
    if active == {"infonce"}:
        queries, positives = model.embed(q_ids, q_lengths, config.pooling), model.embed(p_ids, p_lengths, config.pooling)
    else:  # the decoder terms read the compress states the vectors pool (pooling is compress-mean)
        query_states, states = model.compress(q_ids, q_lengths), model.compress(p_ids, p_lengths)
        queries, positives = model.pool(query_states), model.pool(states)
    negatives = model.embed(_trim(batch["negative_ids"], batch["negative_lengths"]), batch["negative_lengths"], config.pooling)
    n = negatives.shape[0] // q_ids.shape[0]
    negatives = negatives.view(n, q_ids.shape[0], -1).transpose(0, 1)
    terms = {"infonce": info_nce_loss(queries, positives, negatives, config.temperature, config.in_batch_negatives)}
    if "compression" in active:
        terms["compression"] = decoder_loss(model, states, batch["query_targets"], batch["query_target_lengths"])
    if "reconstruction" in active:
        batch_size = q_ids.shape[0]  # the collator's targets start with the positives
        terms["reconstruction"] = decoder_loss(model, states, batch["targets"][:batch_size], batch["target_lengths"][:batch_size])
    if "query_reconstruction" in active:
        terms["query_reconstruction"] = decoder_loss(model, query_states, batch["query_targets"], batch["query_target_lengths"])
    return terms


_COMPUTE = {"compression_terms": compression_terms, "alignment_terms": alignment_terms,
            "contrastive_terms": contrastive_terms}  # what `Stage.compute` names


@torch.no_grad()
def reference_log_probs(model: AutoRegEmbedModel, batch: dict) -> torch.Tensor:
    """(B, 1 + n): π_ref(pos | e_q) then π_ref(neg_j | e_q), from the stage-1 model."""
    (q_ids, q_lengths), _ = _encoder_inputs(batch)
    batch_size = q_ids.shape[0]
    targets, lengths = _batch_targets(batch)
    e_q = model.compress(q_ids, q_lengths)
    n = targets.shape[0] // batch_size - 1
    summed = model.score_padded(torch.cat([e_q] * (1 + n)), targets, lengths)
    return summed.view(1 + n, batch_size).T.float()
