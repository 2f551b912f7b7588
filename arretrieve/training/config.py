"""Everything `arr train` can be told, declared once: `TrainConfig` (the run's settings and each
objective's own settings dataclass, training/objectives.py) and its per-stage `StageSettings`.

The command's flags (cli/train_command.py) and the config-file keys are derived from these fields, so
a new setting is one line here."""

from __future__ import annotations

import json
import types
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import ArrError
from ..registry.model_entry import validate_name
from .objectives import (OBJECTIVE_NAMES, PASSES, REFERENCE_FORMS, AlignmentSettings, CompressionTermSettings,
                         HybridSettings, InfoNCESettings, PoolingSettings, describe_objectives, objective,
                         setting_problems)
from .report import KEEP_BEST_METRICS
from .setting import setting

STAGES = ("compress", "align", "all")
REPORT_TO = ("none", "tensorboard", "wandb")

# The paper's settings (AutoRegEmbed scripts): k=5, lr 1e-5 then 5e-6, warmup 5%, global batch 32
# then 128, 1 then 4 epochs, beta = tau = 0.1.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "num_compress_tokens": 5,
        "compress": {"lr": 1e-5, "batch_size": 32, "epochs": 1.0},
        "align": {"lr": 5e-6, "batch_size": 128, "epochs": 4.0},
        "warmup_ratio": 0.05,
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
class StageSettings:
    """What each stage (compress, align) sets for itself. In a config file a `[compress]` or
    `[align]` table (or the flat `compress_lr`, `align_batch_size`, ...); on the command line one
    flag sets both stages (`--lr`)."""

    lr: float = setting(1e-4, "Learning rate.")
    batch_size: int = setting(8, "Examples per step.")
    epochs: float = setting(1.0, "Epochs.")
    max_steps: int = setting(-1, "Steps (overrides epochs; -1: use epochs).")
    examples: int | None = setting(None, "Use only the first N rows of the data file (small runs).")


STAGE_NAMES = ("compress", "align")


@dataclass(kw_only=True)
class RunSettings:
    """What every objective reads: the model, the data, the schedule, where and how it runs."""

    name: str = setting(MISSING, "Registry name of the trained model.")
    base: str = setting("smollm2-135m", "Registry entry to start from (its base, prompts and k) or a base source.")
    # Roles of the registry entry (i_next, i_self, query, document, symmetric) whose templates
    # replace the base entry's, for training and in the trained model's entry.
    prompts: dict[str, str] = setting(factory=dict, cli=False)
    compression_data: str | None = setting(None, "Stage-1 rows {context, instruction, output}: file or HF dataset id.")
    alignment_data: str | None = setting(None, "Stage-2 rows {query, pos, neg (string or list)}: file or HF dataset id.")
    stage: str = setting("all", "compress, align or all.")
    objective: str = setting("autoregembed", describe_objectives())
    lora: bool = setting(True, "LoRA with trainable compress rows, or full fine-tuning.", flag="--lora/--full")
    lora_r: int = setting(32, "LoRA rank.")
    lora_alpha: int = setting(64, "LoRA alpha.")
    lora_dropout: float = setting(0.0, "LoRA dropout (peft's default; 0.1, the reference code's, costs about a third of a "
                                          "stage-1 step on a CPU: benchmarks/train_throughput.py).")
    lora_targets: list[str] = setting(factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                      help="Modules LoRA adapts (repeat the flag for several).")
    train_norm: bool = setting(False, "LoRA: also train the backbone's final norm (saved with the adapter); it sets the "
                                      "scale of the states the decoder receives, which adapters on the projections cannot change.")
    state_scale: bool = setting(False, "Learn a scalar on the states the decoder reads, started at the token-embedding "
                                       "scale (AutoRegEmbedModel.initial_state_scale); the vectors are unaffected.")
    num_compress_tokens: int | None = setting(None, "Compress tokens k. (default: the base entry's)")
    compress: StageSettings = setting(factory=StageSettings, cli=False)
    align: StageSettings = setting(factory=lambda: StageSettings(lr=5e-5), cli=False)
    gradient_accumulation_steps: int = setting(1, "Batches accumulated per optimizer step.")
    warmup_ratio: float = setting(0.05, "Share of the steps spent warming up the learning rate.")
    scheduler: str = setting("cosine", "Learning-rate schedule (transformers' lr_scheduler_type).")
    weight_decay: float = setting(0.0, "AdamW weight decay.")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.")
    num_negatives: int = setting(1, "Hard negatives per triplet.")
    group_by_length: bool = setting(False, "Batches of similar lengths (shuffled groups): less padding per step.")
    max_length: int = setting(512, "Encoder input tokens (the text is cut, never the prompt or compress tokens).")
    max_target_length: int = setting(256, "Decoder target tokens.")
    gradient_checkpointing: bool = setting(False, "Recompute activations in backward (less memory, slower).")
    fsdp: bool = setting(False, "Shard parameters, gradients and optimizer states over the torchrun processes (HF "
                                "Trainer's FSDP, full_shard) instead of replicating them (DDP); GPUs only.")
    compile_layers: bool = setting(False, "torch.compile each transformer layer (regional compilation): fuses the norm, "
                                          "rotary, activation and LoRA element-wise work, about half of a CPU step; the "
                                          "first steps of each new shape pay the compilation (needs a C++ compiler on CPU).")
    dtype: str = setting("auto", "auto (bf16 where native), float32 or bfloat16.")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps.")
    seed: int = setting(42, "Random seed (initialisation, data order).")
    save_steps: int = setting(500, "Checkpoint every N steps (what --resume continues from).")
    eval_data: str | None = setting(None, "Small BEIR folder scored (nDCG@10) during training, into metrics.jsonl; "
                                          "every evaluation encodes its whole corpus, so keep it small.")
    eval_split: str = setting("test", "Qrels split of --eval-data.")
    eval_steps: int = setting(20, "Evaluate every N steps (and before the first, after the last).")
    probe_data: str | None = setting(None, "BEIR folder of held-out (document, query) pairs for the compression probe "
                                           "(evaluation/compression_probe.py), measured with --eval-steps.")
    probe_split: str = setting("test", "Qrels split of --probe-data.")
    probe_pairs: int = setting(40, "Probe pairs, in whole groups of 20.")
    keep_best: str | None = setting(None, "Restore each stage's best evaluation by this metric: ndcg@10, recall@10 "
                                          "(--eval-data) or probe_<name> (--probe-data).")
    logging_steps: int = setting(10, "Log the loss every N steps.")
    output_dir: str | None = setting(None, "Run folder. (default: runs/NAME)")
    resume: bool = setting(False, "Continue an interrupted run from its last checkpoint (with the settings and data it "
                                  "started with; only where and how it runs, and how often it logs, saves or evaluates, may change).")
    overwrite: bool = setting(False, "Start the run folder and registry entry over.")
    keep_checkpoints: bool = setting(False, "Keep each finished stage's checkpoints (with optimizer state) and best "
                                            "weights in the run folder; by default only its final weights stay.")
    report_to: str = setting("none", "Also log to tensorboard or wandb (HF Trainer's integrations), or none.")
    fields: FieldMap = setting(factory=FieldMap, cli=False)
    preset: str | None = setting(None, "paper: the paper's hyperparameters.")


# The run's settings first, then each objective's (their order in `arr train --help`).
@dataclass(kw_only=True)
class TrainConfig(CompressionTermSettings, PoolingSettings, InfoNCESettings, HybridSettings, AlignmentSettings, RunSettings):
    """Everything one `arr train` call is told: the run's settings and every objective's own."""

    def stage_settings(self, stage: str) -> StageSettings:
        """The settings of one stage ("compress" or "align")."""
        return self.compress if stage == "compress" else self.align

    def __post_init__(self) -> None:
        if isinstance(self.fields, dict):
            self.fields = FieldMap(**self.fields)
        for stage in STAGE_NAMES:  # a config file's [compress] / [align] table
            value = getattr(self, stage)
            if isinstance(value, dict):
                defaults = asdict(TrainConfig.__dataclass_fields__[stage].default_factory())
                setattr(self, stage, StageSettings(**{**defaults, **value}))
        validate_name(self.name)  # before a run folder is made or removed in its name
        _check_types(self)
        for settings in (self.compress, self.align):
            _check_types(settings)
        if self.objective not in OBJECTIVE_NAMES:
            raise ArrError(f"objective must be one of {', '.join(OBJECTIVE_NAMES)}")
        chosen = objective(self.objective)
        checks = [
            (self.stage in STAGES, f"stage must be one of {', '.join(STAGES)}"),
            (self.reference_form in REFERENCE_FORMS, f"reference form must be one of {', '.join(REFERENCE_FORMS)}"),
            (self.passes in PASSES, f"passes must be one of {', '.join(PASSES)}"),
            (self.num_negatives >= 1, "num_negatives must be at least 1"),
            (min(self.contrastive_weight, self.compression_weight, self.reconstruction_weight, self.query_reconstruction_weight) >= 0,
             "contrastive_weight, compression_weight and the reconstruction weights must not be negative"),
            (self.beta > 0 and self.tau > 0 and self.temperature > 0, "beta, tau and temperature must be positive"),
            (min(self.compress.batch_size, self.align.batch_size) >= 1, "batch sizes must be at least 1"),
            (self.eval_steps >= 1, "eval_steps must be at least 1"),
            (self.probe_pairs >= 20, "probe_pairs must be at least 20 (one group)"),
            (self.report_to in REPORT_TO, f"report_to must be one of {', '.join(REPORT_TO)}"),
            (all(s.lr >= 0 and s.epochs > 0 and (s.max_steps == -1 or s.max_steps >= 1)
                 and (s.examples is None or s.examples >= 1) for s in (self.compress, self.align)),
             "lr must not be negative, epochs must be positive, max_steps -1 (use epochs) or at least 1, "
             "examples at least 1"),
            (min(self.logging_steps, self.save_steps, self.gradient_accumulation_steps, self.max_length,
                 self.max_target_length, self.lora_r) >= 1 and (self.num_compress_tokens is None or self.num_compress_tokens >= 1),
             "logging_steps, save_steps, gradient_accumulation_steps, max_length, max_target_length, lora_r and "
             "num_compress_tokens must be at least 1"),
            (0 <= self.warmup_ratio < 1 and 0 <= self.lora_dropout < 1 and self.weight_decay >= 0
             and self.max_grad_norm > 0 and self.lora_alpha > 0,
             "warmup_ratio and lora_dropout must be in [0, 1), weight_decay >= 0, max_grad_norm and lora_alpha > 0"),
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
        if not chosen.selected(self.stage):
            problems.append(f"the {self.objective} objective has no {self.stage} stage; use --stage "
                            + " or ".join(s.name for s in chosen.stages) + " or all")  # e.g. contrastive has no stage 1
        problems += setting_problems(chosen, self)
        if problems:
            raise ArrError("; ".join(problems))

    def stages(self):
        """The objective's stages this run trains, in order (training/objectives.py)."""
        return objective(self.objective).selected(self.stage)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_types(settings) -> None:
    """Each setting of the type its field declares: a bool is no number, a number no bool, a float
    field takes an int; None only where the field allows it."""
    import typing

    hints = typing.get_type_hints(type(settings))
    wrong = []
    for f in fields(settings):
        value, hint = getattr(settings, f.name), hints[f.name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if value is None and type(None) in allowed:
            continue
        kinds = tuple(typing.get_origin(a) or a for a in allowed if a is not type(None))
        if float in kinds:
            kinds += (int,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wrong.append(f"{f.name} = {value!r} (expected {' or '.join(k.__name__ for k in kinds)})")
    if wrong:
        raise ArrError(f"settings of the wrong type: {'; '.join(wrong)}")


def nest_stage_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Flat spellings of stage settings (`compress_lr`, `align_max_steps`) into their stage's table."""
    names = {f.name for f in fields(StageSettings)}
    nested: dict[str, Any] = {}
    for key, value in values.items():
        stage, _, rest = key.partition("_")
        if stage in STAGE_NAMES and rest in names:
            nested.setdefault(stage, {})[rest] = value
        elif key in STAGE_NAMES and isinstance(value, dict):
            nested.setdefault(key, {}).update(value)
        else:
            nested[key] = value
    return nested


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; stage tables are merged setting by setting."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in nest_stage_settings(layer).items():
            if key in STAGE_NAMES and isinstance(value, dict):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    return merged


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    """Preset values first, then everything given explicitly."""
    preset = values.get("preset")
    if preset is None:
        return _merge(values)
    if preset not in PRESETS:
        raise ArrError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return _merge(PRESETS[preset], values)


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
    payload = nest_stage_settings(payload)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(payload) - known)
    stage_names = {f.name for f in fields(StageSettings)}
    for stage in STAGE_NAMES:
        if stage in payload and not isinstance(payload[stage], dict):
            unknown.append(stage)
        unknown += [f"{stage}.{key}" for key in sorted(set(payload.get(stage) or {}) - stage_names)]
    if unknown:
        raise ArrError(f"{path}: unknown settings {unknown}")
    return payload


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any], config_file: Path | None = None) -> TrainConfig:
    """Preset < config file < command-line flags."""
    given = {k: v for k, v in flag_values.items() if v is not None}
    if "output_dir" in file_values and "output_dir" not in given:
        _check_file_output_dir(file_values["output_dir"], config_file)
    merged = _merge(file_values, given)
    if "name" not in merged:
        raise ArrError("a name for the trained model is required (--name or `name` in the config file)")
    try:
        return TrainConfig(**apply_preset(merged))
    except TypeError as exc:
        raise ArrError(f"bad training settings: {exc}") from None


def _check_file_output_dir(value: Any, config_file: Path | None) -> None:
    """A config file (which may come from anyone) chooses the run folder only inside the working
    folder or the toolkit home: elsewhere, and `--overwrite` would clear a folder of the file's
    choosing. The user confirms another place by naming it on the command line."""
    from ..home import arr_home

    if not isinstance(value, str):
        return  # TrainConfig's typed check says what is wrong with it
    target = Path(value).expanduser().resolve()
    if any(target.is_relative_to(root.resolve()) for root in (Path.cwd(), arr_home())):
        return
    raise ArrError(f"{config_file or 'the config file'} sets output_dir = {value!r}, outside the working folder and "
                   f"the toolkit home ({arr_home()}); pass --output-dir {value} to train there")
