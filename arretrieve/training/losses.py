"""The training objectives.

Stage 2 (conditional distribution alignment), with π(x|e) = Σ_t log p_decoder(x_t | x_<t, e):
    a = π(d+ | e_q),  b = π(d+ | e_d+),  c_j = π(d_j- | e_q),  ref+ / ref-_j from the stage-1 model
    margin_j = (a - c_j) + (ref+ - ref-_j)       reference form "code" (the published numbers)
    margin_j = (a - ref+) - (c_j - ref-_j)       reference form "paper" (DPO form)
    s1 = σ(β |a - b|),  s2_j = σ(β margin_j)
    loss = -log( e^{-s1/τ} / (e^{-s1/τ} + Σ_j e^{-s2_j/τ}) )   (one denominator for all negatives)
With one negative this is softplus((s1 - s2)/τ), exactly the reference code's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def alignment_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    ref_pos: torch.Tensor,
    ref_neg: torch.Tensor,
    beta: float,
    tau: float,
    reference_form: str = "code",
) -> torch.Tensor:
    """a, b, ref_pos: (B,); c, ref_neg: (B, n). Mean over the batch."""
    if reference_form == "code":
        margin = (a.unsqueeze(1) - c) + (ref_pos.unsqueeze(1) - ref_neg)
    elif reference_form == "paper":
        margin = (a - ref_pos).unsqueeze(1) - (c - ref_neg)
    else:
        raise ValueError(f"unknown reference form {reference_form!r}")
    s1 = torch.sigmoid(beta * (a - b).abs())
    s2 = torch.sigmoid(beta * margin)
    logits = torch.cat([-s1.unsqueeze(1), -s2], dim=1) / tau
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def initial_margins(reference: torch.Tensor, reference_form: str) -> torch.Tensor:
    """The alignment margins at step 0, where the policy equals the reference (a = ref+, c_j = ref-_j):
    twice ref+ − ref-_j in the code form, zero in the paper's DPO form."""
    gaps = (reference[:, :1] - reference[:, 1:]).float()
    if reference_form == "code":
        return 2 * gaps
    if reference_form == "paper":
        return torch.zeros_like(gaps)
    raise ValueError(f"unknown reference form {reference_form!r}")


def beta_saturation(reference: torch.Tensor, beta: float, reference_form: str = "code",
                    limit: float = 4.0) -> tuple[float, float]:
    """(share of triplet/negative pairs whose step-0 margin has β·|margin| > limit, median |margin| in nats).

    Past `limit` the sigmoid's slope is under 2 % of its peak, so those pairs barely train. Summed
    log-probabilities of long targets differ by hundreds of nats, where the paper's β=0.1 (chosen for
    short NLI sentences) saturates. The margin is the one of the form in use (`initial_margins`).
    """
    margins = initial_margins(reference, reference_form).abs()
    return float((beta * margins > limit).float().mean()), float(margins.median())


def compression_loss(summed_logp: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Token-level mean cross-entropy over every target token of the batch (EOS included)."""
    return -summed_logp.sum() / target_lengths.sum()


def info_nce_loss(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    temperature: float,
    in_batch: bool = True,
) -> torch.Tensor:
    """InfoNCE over normalised embeddings: queries (B, H), positives (B, H), negatives (B, n, H).

    With in-batch negatives every positive and negative of the batch is a candidate for every
    query; otherwise a query sees only its own positive and hard negatives.
    """
    if in_batch:
        candidates = torch.cat([positives, negatives.reshape(-1, negatives.shape[-1])])
        scores = queries @ candidates.T / temperature
        labels = torch.arange(queries.shape[0], device=queries.device)
    else:
        own = torch.cat([positives.unsqueeze(1), negatives], dim=1)
        scores = torch.einsum("bh,bnh->bn", queries, own) / temperature
        labels = torch.zeros(queries.shape[0], dtype=torch.long, device=queries.device)
    return F.cross_entropy(scores, labels)
