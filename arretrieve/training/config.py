"""Everything `arr train` can be told, as one dataclass: CLI flags and config-file keys are the same names."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ArrError

STAGES = ("compress", "align", "all")
OBJECTIVES = ("autoregembed", "contrastive", "autoregembed+contrastive")
REFERENCE_FORMS = ("code", "paper")
PASSES = ("batched", "sequential")
KEEP_BEST_METRICS = ("ndcg@10", "recall@10", "probe_specific_share", "probe_identification", "probe_self_identification")

# The paper's settings (AutoRegEmbed scripts): k=5, lr 1e-5 then 5e-6, warmup 5%, global batch 32
# then 128, 1 then 4 epochs, beta = tau = 0.1.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_compress_tokens": 5,
        "compress_lr": 1e-5,
        "align_lr": 5e-6,
        "warmup_ratio": 0.05,
        "compress_batch_size": 32,
        "align_batch_size": 128,
        "compress_epochs": 1.0,
        "align_epochs": 4.0,
        "beta": 0.1,
        "tau": 0.1,
    },
}


@dataclass
class FieldMap:
    """Column names in the training files."""

    context: str = "context"
    instruction: str = "instruction"
    output: str = "output"
    query: str = "query"
    pos: str = "pos"
    neg: str = "neg"


@dataclass
class TrainConfig:
    name: str
    base: str = "smollm2-135m"  # a registry entry (its base, prompts, k) or a base source
    # Prompt templates (roles of the registry entry: i_next, i_self, query, document, symmetric)
    # that replace the base entry's, for training and in the trained model's entry.
    prompts: dict[str, str] = field(default_factory=dict)
    compression_data: str | None = None
    alignment_data: str | None = None
    stage: str = "all"
    objective: str = "autoregembed"
    reference_form: str = "code"
    lora: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.1
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    # LoRA: also train the backbone's final norm (saved with the adapter). It sets the scale of the
    # states the decoder receives, which adapters on the projections cannot change.
    train_norm: bool = False
    # A learned scalar on the states the decoder receives, started at token-embedding norm ÷ the
    # states' expected norm (AutoRegEmbedModel.initial_state_scale); the vectors are unaffected.
    state_scale: bool = False
    num_compress_tokens: int | None = None  # default: the base entry's k
    compress_lr: float = 1e-4
    align_lr: float = 5e-5
    compress_batch_size: int = 8
    align_batch_size: int = 8
    compress_epochs: float = 1.0
    align_epochs: float = 1.0
    compress_max_steps: int = -1
    align_max_steps: int = -1
    compress_examples: int | None = None  # use only the first N rows (small runs)
    align_examples: int | None = None
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.1
    tau: float = 0.1
    num_negatives: int = 1
    # Stage 2: every target of the batch is a negative for the other rows (one denominator), with
    # the stage-1 model's scores of those pairs computed on the fly as the reference term.
    in_batch_alignment: bool = False
    # autoregembed+contrastive: loss = alignment + contrastive_weight * InfoNCE on the pooled vectors.
    contrastive_weight: float = 1.0
    temperature: float = 0.05  # contrastive
    in_batch_negatives: bool = True  # contrastive
    pooling: str = "compress-mean"  # contrastive: compress-mean, last-token or mean
    passes: str = "batched"
    group_by_length: bool = False  # batches of similar lengths (shuffled groups): less padding per step
    max_length: int = 512
    max_target_length: int = 256
    gradient_checkpointing: bool = False
    dtype: str = "auto"
    device: str = "auto"
    seed: int = 42
    save_steps: int = 500
    # A small BEIR folder scored (nDCG@10) every eval_steps steps during training, with the
    # qrels of eval_split; every evaluation encodes its whole corpus, so keep it small.
    eval_data: str | None = None
    eval_split: str = "test"
    eval_steps: int = 20
    # Held-out (document, query) pairs of a BEIR folder for the compression probe, measured at the
    # same steps as eval_data (see evaluation/compression_probe.py); probe_pairs in whole groups of 20.
    probe_data: str | None = None
    probe_split: str = "test"
    probe_pairs: int = 40
    # Restore, at the end of each stage, the weights of its best evaluation by this metric
    # (ndcg@10 or recall@10 from eval_data, probe_<name> from probe_data).
    keep_best: str | None = None
    logging_steps: int = 10
    output_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    fields: FieldMap = field(default_factory=FieldMap)
    preset: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.fields, dict):
            self.fields = FieldMap(**self.fields)
        checks = [
            (self.stage in STAGES, f"stage must be one of {', '.join(STAGES)}"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}"),
            (self.reference_form in REFERENCE_FORMS, f"reference form must be one of {', '.join(REFERENCE_FORMS)}"),
            (self.passes in PASSES, f"passes must be one of {', '.join(PASSES)}"),
            (self.num_negatives >= 1, "num_negatives must be at least 1"),
            (self.contrastive_weight >= 0, "contrastive_weight must not be negative"),
            (self.beta > 0 and self.tau > 0 and self.temperature > 0, "beta, tau and temperature must be positive"),
            (min(self.compress_batch_size, self.align_batch_size) >= 1, "batch sizes must be at least 1"),
            (self.eval_steps >= 1, "eval_steps must be at least 1"),
            (self.probe_pairs >= 20, "probe_pairs must be at least 20 (one group)"),
            (isinstance(self.prompts, dict) and all(isinstance(v, str) for v in self.prompts.values()),
             "prompts must map roles to template strings"),
        ]
        problems = [message for ok, message in checks if not ok]
        if self.keep_best is not None:
            if self.keep_best not in KEEP_BEST_METRICS:
                problems.append(f"keep_best must be one of {', '.join(KEEP_BEST_METRICS)}")
            elif self.keep_best.startswith("probe_") and not self.probe_data:
                problems.append(f"keep_best {self.keep_best} needs probe_data")
            elif not self.keep_best.startswith("probe_") and not self.eval_data:
                problems.append(f"keep_best {self.keep_best} needs eval_data")
        if self.objective == "contrastive" and self.stage == "compress":
            problems.append("the contrastive objective has no compression stage; use --stage align or all")
        if problems:
            raise ArrError("; ".join(problems))

    def needs(self) -> tuple[bool, bool]:
        """(run stage 1, run stage 2)."""
        if self.objective == "contrastive":
            return False, True
        return self.stage in ("compress", "all"), self.stage in ("align", "all")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Preset values first, then everything given explicitly."""
    preset = values.get("preset")
    if preset is None:
        return values
    if preset not in PRESETS:
        raise ArrError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return {**PRESETS[preset], **values}


def read_config_file(path: Path) -> dict[str, Any]:
    """Keys of a .json, .toml or .yaml file (the same names as the command's flags, with _)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ArrError(f"{path}: not valid UTF-8") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            payload = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            payload = yaml.safe_load(text)
        else:
            payload = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - json/toml/yaml each raise their own type
        raise ArrError(f"{path}: cannot parse ({str(exc).splitlines()[0]})") from None
    if not isinstance(payload, dict):
        raise ArrError(f"{path}: expected a mapping of settings")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ArrError(f"{path}: unknown settings {unknown}")
    return payload


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> TrainConfig:
    """Preset < config file < command-line flags."""
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    if "name" not in merged:
        raise ArrError("a name for the trained model is required (--name or `name` in the config file)")
    try:
        return TrainConfig(**apply_preset(merged))
    except TypeError as exc:
        raise ArrError(f"bad training settings: {exc}") from None
