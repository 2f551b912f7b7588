"""The compression probe: how much of a source text the frozen decoder can read from its k states.

A loss going down says little: the states can learn what targets look like in general (a prior)
without carrying anything about their own source. The probe measures the document-specific part.
For held-out (source, target) pairs in groups of `group_size`, every target is scored by the frozen
decoder, as mean log-probability per target token, after:

    the right source's k states           right       (the source encoded with the `i_next` prompt)
    the other sources' states in its group random      (the mean over the other group members)
    BOS alone                             bos
    the source itself as plain text       plain_right / plain_random (the same prompt, no states)

and reports
    specific_share      (right − random) ÷ (plain_right − plain_random): the share of the
                        document-specific information the plain text gives that the states carry
    specific_share_stderr its standard error over the targets: a share within about two of them
                        is noise (the states may carry nothing about their source)
    identification      how often the right source's states give the target its highest score
                        among the group (chance: 1 / group_size)
    self_identification how often a target is scored highest after its OWN states (the target
                        encoded with the `i_self` prompt) among its group's targets' states
    generic_gain        random − bos: what any states give over BOS, reported apart (a prior)
    state_norm / token_norm  the states' scale against the decoder's own token embeddings'

The plain-text scores depend on the frozen decoder only, so a `CompressionProbe` computes them once
and reuses them for every later measurement of a model over the same base.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..errors import ArrError
from ..registry.model_entry import split_template
from .beir_data import BeirDataset

DEFAULT_GROUP_SIZE = 20
# Plain-text scoring reads whole documents, so the random side uses this many other sources of
# the group (an unbiased estimate of the group mean) to keep the one-off cost small.
PLAIN_DISTRACTORS = 4


@dataclass(frozen=True)
class ProbePairs:
    sources: list[str]
    targets: list[str]
    name: str


def pairs_from_beir(dataset: BeirDataset, limit: int | None = None) -> ProbePairs:
    """(document, query) pairs of a BEIR set: queries with exactly one relevant document, in query-id
    order (deterministic), at most `limit` of them."""
    texts = {document.id: document.full_text for document in dataset.corpus.documents()}
    sources, targets = [], []
    for qid in sorted(dataset.queries):
        relevant = [doc for doc, grade in dataset.qrels.get(qid, {}).items() if grade > 0]
        if len(relevant) == 1:
            sources.append(texts[relevant[0]])
            targets.append(dataset.queries[qid])
    if limit is not None:
        sources, targets = sources[:limit], targets[:limit]
    return ProbePairs(sources, targets, dataset.name)


@dataclass
class ProbeResult:
    pairs: int
    group_size: int
    right: float
    random: float
    bos: float
    plain_right: float
    plain_random: float
    specific_share: float
    specific_share_stderr: float
    identification: float
    self_identification: float
    generic_gain: float
    state_norm: float  # mean L2 norm of the source states the decoder receives
    token_norm: float  # mean L2 norm of the decoder's own token embeddings (the scale it expects)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _groups(count: int, group_size: int) -> list[range]:
    return [range(start, start + group_size) for start in range(0, count - group_size + 1, group_size)]


class CompressionProbe:
    """Probe pairs with the templates that encode them; `measure(model)` for any AutoRegEmbed model."""

    def __init__(self, pairs: ProbePairs, source_template: str, self_template: str,
                 group_size: int = DEFAULT_GROUP_SIZE, batch_size: int = 64):
        if group_size < 2:
            raise ArrError("the probe's group size must be at least 2")
        if len(pairs.sources) < group_size:
            raise ArrError(f"the probe needs at least {group_size} pairs; {pairs.name} gives {len(pairs.sources)}")
        split_template(source_template), split_template(self_template)  # validate early
        self.pairs, self.group_size, self.batch_size = pairs, group_size, batch_size
        self.source_template, self.self_template = source_template, self_template
        self.count = len(pairs.sources) - len(pairs.sources) % group_size  # whole groups only
        self._plain: tuple[float, float] | None = None

    # ------------------------------------------------------------------ scoring helpers
    def _in_length_order(self, lengths: Sequence[int], run) -> torch.Tensor:
        """run(indices) → (len(indices),) for chunks of similar length (little padding), in input order."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        out = torch.empty(len(lengths))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = run(chunk).float().cpu()
        return out

    def _score_states(self, model, states: torch.Tensor, targets: list[list[int]], pairs: list[tuple[int, int]]) -> torch.Tensor:
        """Mean log p per token of targets[t] after states[s], for each (t, s)."""

        def run(chunk):
            ids, lengths = model.pad([targets[pairs[i][0]] for i in chunk])
            return model.score_padded(states[[pairs[i][1] for i in chunk]], ids, lengths) / lengths

        return self._in_length_order([len(targets[t]) for t, _ in pairs], run)

    def _score_after_tokens(self, model, prefixes: list[list[int]], targets: list[list[int]], pairs) -> torch.Tensor:
        def run(chunk):
            summed, lengths = model.score_after_tokens([prefixes[pairs[i][1]] for i in chunk], [targets[pairs[i][0]] for i in chunk])
            return summed / lengths

        return self._in_length_order([len(prefixes[s]) + len(targets[t]) for t, s in pairs], run)

    def _states(self, model, texts: Sequence[str], template: str) -> torch.Tensor:
        encoded = model.encode_texts(texts, template).input_ids
        states = torch.empty(len(encoded), model.num_compress_tokens, model.hidden_size, device=model.device)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            states[chunk] = model.compress(*model.pad([encoded[i] for i in chunk])).to(states.dtype)
        return states

    def _distractor_pairs(self, per_target: int | None) -> list[tuple[int, int]]:
        """(target, other source in its group) pairs; `per_target` of them each, or all."""
        pairs = []
        for group in _groups(self.count, self.group_size):
            for t in group:
                others = [s for s in group if s != t]
                if per_target is not None:  # a fixed, spread-out choice: the next ones in the group
                    offset = group.index(t)
                    others = [group[(offset + 1 + j) % len(group)] for j in range(per_target)]
                pairs.extend((t, s) for s in others)
        return pairs

    # ------------------------------------------------------------------ the measurement
    @torch.no_grad()
    def plain_reference(self, model) -> tuple[float, float]:
        """(plain_right, plain_random): the frozen decoder reading the sources as text."""
        if self._plain is None:
            sources = model.encode_texts(self.pairs.sources[: self.count], self.source_template).input_ids
            # The text prompt without the compress tokens, which only the encoder knows.
            prefixes = [ids[: -model.num_compress_tokens] for ids in sources]
            targets = model.encode_targets(self.pairs.targets[: self.count]).input_ids
            right = self._score_after_tokens(model, prefixes, targets, [(i, i) for i in range(self.count)])
            distractors = self._distractor_pairs(min(PLAIN_DISTRACTORS, self.group_size - 1))
            random = self._score_after_tokens(model, prefixes, targets, distractors)
            self._plain = (float(right.mean()), float(random.mean()))
        return self._plain

    @torch.no_grad()
    def measure(self, model) -> ProbeResult:
        was_training = model.training
        model.eval()
        try:
            plain_right, plain_random = self.plain_reference(model)
            count, group = self.count, self.group_size
            targets = model.encode_targets(self.pairs.targets[:count]).input_ids
            source_states = self._states(model, self.pairs.sources[:count], self.source_template)
            self_states = self._states(model, self.pairs.targets[:count], self.self_template)
            all_pairs = [(t, s) for g in _groups(count, group) for t in g for s in g]
            by_source = self._score_states(model, source_states, targets, all_pairs).view(count // group, group, group)
            by_self = self._score_states(model, self_states, targets, all_pairs).view(count // group, group, group)
            bos_prefix = [list(model.bos_ids) or [model.eos_id]]
            bos = self._score_after_tokens(model, bos_prefix, targets, [(t, 0) for t in range(count)])
        finally:
            model.train(was_training)
        diagonal = torch.eye(group, dtype=torch.bool).expand_as(by_source)
        right = by_source[diagonal].mean()
        random = by_source[~diagonal].mean()
        truth = torch.arange(group).expand(count // group, group)
        plain_gap = plain_right - plain_random
        # Per target: its right score minus its group's other sources' mean; their mean is right − random.
        per_target = by_source[diagonal] - by_source.masked_fill(diagonal, 0).sum(-1).flatten() / (group - 1)
        stderr = float(per_target.std() / count ** 0.5)
        return ProbeResult(
            pairs=count, group_size=group,
            right=float(right), random=float(random), bos=float(bos.mean()),
            plain_right=plain_right, plain_random=plain_random,
            specific_share=float(right - random) / plain_gap if plain_gap > 0 else float("nan"),
            specific_share_stderr=stderr / plain_gap if plain_gap > 0 else float("nan"),
            identification=float((by_source.argmax(-1) == truth).float().mean()),
            self_identification=float((by_self.argmax(-1) == truth).float().mean()),
            generic_gain=float(random - bos.mean()),
            state_norm=float(source_states.float().norm(dim=-1).mean()),
            token_norm=float(model._base_lm.get_input_embeddings().weight.float().norm(dim=-1).mean()),
        )
