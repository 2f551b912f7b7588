"""Every training objective, one record each: its stages, the prompts its encoder reads, the loss of
each stage as a sum of named (weighted) terms, the decoder targets those terms need, and the
settings dataclasses it reads.

`OBJECTIVES` is the one list that config validation, `arr train --help` and the docs read. Adding an
objective is one `Objective` here plus, where it has new terms, their computation in `steps.py`
(ARCHITECTURE.md, "How to add an objective"). No torch at import: the CLI builds its flags from here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .setting import setting


# Each objective's own settings. `TrainConfig` is made of them (one flat namespace of flags and
# config-file keys); a setting of a dataclass the chosen objective does not read is refused unless
# it keeps its default. `pooling` is the plain contrastive objective's alone (`Objective.pooling`).

REFERENCE_FORMS = ("code", "paper")
PASSES = ("batched", "sequential")


@dataclass(kw_only=True)
class AlignmentSettings:
    """AutoRegEmbed's stage 2, conditional distribution alignment (training/losses.py)."""

    reference_form: str = setting("code", "Stage-2 reference term: code (adds the margin) or paper (DPO form).")
    beta: float = setting(0.1, "Alignment loss beta.")
    tau: float = setting(0.1, "Alignment loss temperature tau.")
    in_batch_alignment: bool = setting(False, "Stage 2: every target of the batch is a negative for the other rows (one "
                                              "denominator), with the stage-1 model's scores of those pairs computed on "
                                              "the fly as the reference term.")
    passes: str = setting("batched", "Stage-2 passes: batched or sequential (reference structure, less memory).")


@dataclass(kw_only=True)
class HybridSettings:
    """The InfoNCE term added to the alignment loss."""

    contrastive_weight: float = setting(1.0, "autoregembed+contrastive: loss = alignment + this weight x InfoNCE on the pooled vectors.")


@dataclass(kw_only=True)
class InfoNCESettings:
    """InfoNCE on the pooled vectors (every objective with an `infonce` term)."""

    temperature: float = setting(0.05, "InfoNCE temperature.")
    in_batch_negatives: bool = setting(True, "InfoNCE: the other rows' positives are negatives too.")


@dataclass(kw_only=True)
class PoolingSettings:
    """The plain contrastive baseline alone may pool otherwise than over the compress states."""

    pooling: str = setting("compress-mean", "Contrastive objective's pooling: compress-mean, last-token or mean.")


@dataclass(kw_only=True)
class CompressionTermSettings:
    """contrastive+compression: stage 1's decoder losses on the states InfoNCE trains."""

    compression_weight: float = setting(1.0, "contrastive+compression: loss = InfoNCE + this weight x stage 1's loss of the "
                                             "frozen decoder generating each query from its positive document's states.")
    reconstruction_weight: float = setting(0.0, "contrastive+compression: plus this weight x the frozen decoder's loss "
                                                "rebuilding each positive document (cut to max_target_length) from its "
                                                "own states, ICAE's autoencoding task, which made stage 1 compress.")
    query_reconstruction_weight: float = setting(0.0, "contrastive+compression: plus this weight x the frozen decoder's loss "
                                                      "rebuilding each query from its own states (the query prompt's, which "
                                                      "the index searches with), as stage 1's i_self rows do.")


OBJECTIVE_SETTINGS = (AlignmentSettings, HybridSettings, InfoNCESettings, CompressionTermSettings)

# What a batch of triplets can carry besides the encoder inputs of queries and positives.
NEGATIVE_INPUTS = "negative_inputs"  # the negatives in the document prompt, for the encoder
POSITIVE_TARGETS = "positive_targets"  # decoder targets
NEGATIVE_TARGETS = "negative_targets"
QUERY_TARGETS = "query_targets"


@dataclass(frozen=True)
class Term:
    """One named part of a stage's loss, weighted by a setting (None: weight 1); a term whose weight is
    0 is not computed, and its batches carry nothing for it."""

    name: str
    weight: str | None = None
    needs: tuple[str, ...] = ()  # what its batches carry (the constants above)
    reference: bool = False  # needs the stage-1 model's scores of the same pairs


@dataclass(frozen=True)
class Stage:
    """One training stage of an objective: its run folder and settings table (`compress` or `align`),
    the data it reads, the prompts of its encoder inputs and its loss terms, computed together by
    `steps.<compute>`."""

    name: str
    title: str  # how messages name it: "stage 1", "stage 2"
    data: str  # its data setting, `<data>_data`: "compression" rows {context, instruction, output} or "alignment" triplets
    terms: tuple[Term, ...]
    compute: str
    roles: tuple[str, str] | None = None  # triplets: the entry's prompts for the query side and the document side


@dataclass(frozen=True)
class Objective:
    name: str
    summary: str
    stages: tuple[Stage, ...]
    settings: tuple[type, ...]
    pooling: str | None = "compress-mean"  # the trained model's pooling; None: the `pooling` setting

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def selected(self, stage_setting: str) -> tuple[Stage, ...]:
        """The stages `--stage` runs: compress, align or all (an objective without stage 1 runs its stage 2 for all)."""
        return tuple(s for s in self.stages if stage_setting in ("all", s.name))


# Stage 1 reads compression rows, whose batches always carry their output as the target.
COMPRESSION = Stage("compress", "stage 1", "compression", (Term("compression"),), "compression_terms")
_ALIGNMENT = Term("alignment", needs=(POSITIVE_TARGETS, NEGATIVE_TARGETS), reference=True)
_INFONCE = Term("infonce", needs=(NEGATIVE_INPUTS,))
_AUTOREGEMBED_ROLES = ("i_next", "i_self")  # the paper's orientation: a document's states generate its pair
_RETRIEVAL_ROLES = ("query", "document")  # as the index searches

OBJECTIVES: tuple[Objective, ...] = (
    Objective(
        "autoregembed",
        "AutoRegEmbed: stage 1 (information compression), then stage 2 (conditional distribution alignment).",
        (COMPRESSION, Stage("align", "stage 2", "alignment", (_ALIGNMENT,), "alignment_terms", _AUTOREGEMBED_ROLES)),
        (AlignmentSettings,),
    ),
    Objective(
        "contrastive",
        "InfoNCE on query-document triplets (the contrastive baseline), no stage 1.",
        (Stage("align", "stage 2", "alignment", (_INFONCE,), "contrastive_terms", _RETRIEVAL_ROLES),),
        (InfoNCESettings,),
        pooling=None,
    ),
    Objective(
        "autoregembed+contrastive",
        "AutoRegEmbed's two stages, stage 2 adding contrastive_weight x InfoNCE on the pooled vectors.",
        (COMPRESSION, Stage("align", "stage 2", "alignment",
                            (_ALIGNMENT, Term("infonce", "contrastive_weight", (NEGATIVE_INPUTS,))),
                            "alignment_terms", _AUTOREGEMBED_ROLES)),
        (AlignmentSettings, HybridSettings, InfoNCESettings),
    ),
    Objective(
        "contrastive+compression",
        "InfoNCE plus stage 1's decoder losses on the same compress states (the default's last steps), no stage 1.",
        (Stage("align", "stage 2", "alignment",
               (_INFONCE, Term("compression", "compression_weight", (QUERY_TARGETS,)),
                Term("reconstruction", "reconstruction_weight", (POSITIVE_TARGETS,)),
                Term("query_reconstruction", "query_reconstruction_weight", (QUERY_TARGETS,))),
               "contrastive_terms", _RETRIEVAL_ROLES),),
        (InfoNCESettings, CompressionTermSettings),
    ),
)
OBJECTIVE_NAMES = tuple(o.name for o in OBJECTIVES)


def objective(name: str) -> Objective:
    for candidate in OBJECTIVES:
        if candidate.name == name:
            return candidate
    raise KeyError(name)


def active_terms(stage: Stage, config) -> tuple[Term, ...]:
    """The stage's terms with a non-zero weight under `config`."""
    return tuple(t for t in stage.terms if t.weight is None or getattr(config, t.weight))


def batch_needs(stage: Stage, config) -> frozenset[str]:
    """What the stage's batches must carry: the union of its active terms' needs."""
    return frozenset(need for term in active_terms(stage, config) for need in term.needs)


def uses_reference_scores(stage: Stage, config) -> bool:
    """Precomputed stage-1 reference scores (an in-batch alignment scores them on the fly instead)."""
    return any(t.reference for t in active_terms(stage, config)) and not config.in_batch_alignment


def setting_problems(chosen: Objective, config) -> list[str]:
    """Settings the chosen objective does not read, set to other than their defaults, and another
    pooling where the objective fixes it: refused, since they would be silently ignored."""
    problems = []
    for settings in OBJECTIVE_SETTINGS:
        if settings in chosen.settings:
            continue
        owners = [o.name for o in OBJECTIVES if settings in o.settings]
        named = owners[0] if len(owners) == 1 else ", ".join(owners[:-1]) + " and " + owners[-1]
        for f in fields(settings):
            if getattr(config, f.name) != f.default:
                problems.append(f"{f.name} belongs to the {named} objective{'s' if len(owners) > 1 else ''}, "
                                f"not {chosen.name}")
    if chosen.pooling is not None and config.pooling != chosen.pooling:
        problems.append(f"{chosen.name} trains the compress states the decoder reads: pooling must be {chosen.pooling}")
    return problems


def describe_objectives() -> str:
    """The objectives for `--objective`'s help and the docs, from the records."""
    return "; ".join(f"{o.name}: {o.summary}" for o in OBJECTIVES)
