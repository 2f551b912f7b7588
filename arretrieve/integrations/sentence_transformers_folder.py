"""Registry models as sentence-transformers folders: `SentenceTransformer(folder)` gives arretrieve's vectors.

An AutoRegEmbed folder is a plain transformers model (LoRA merged, the compress tokens added to the
tokenizer and their rows written into the input embeddings) plus one module, `AutoRegEmbedEncoder`,
that tokenises as arretrieve does (each piece on its own, only the text cut, the compress tokens
last) and pools the compress states. The module's class lives in this installed package; the folder
holds no code. Prompts are the entry's templates (`{text}` marks where the text goes), stored as the
folder's sentence-transformers prompts, so `encode_query` / `encode_document` pick them by name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from ..modeling.backbone import local_folder
from ..errors import ArrError

try:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.input_module import InputModule
except ImportError:
    raise ArrError("sentence-transformers folders need sentence-transformers >= 6: pip install 'arretrieve[interop]'") from None
from ..modeling.autoregembed_model import AutoRegEmbedModel
from ..registry.model_entry import PROMPT_ROLES, TEXT_FIELD, ModelEntry, split_template

ENCODER_CONFIG = "arretrieve_encoder.json"
# `encode` without a prompt encodes as arretrieve does by default: as a document.
DEFAULT_PROMPT = "document"


class AutoRegEmbedEncoder(InputModule):
    """Tokenise with a prompt template, run the transformer, pool the compress states (L2-normalised)."""

    config_keys = ["num_compress_tokens", "add_bos", "max_length", "pooling"]
    config_file_name = ENCODER_CONFIG
    save_in_root = True

    def __init__(self, model: AutoRegEmbedModel, pooling: str = "compress-mean"):
        super().__init__()
        self.model = model
        self.pooling = pooling

    # The sentence-transformers config keys, read from the wrapped model.
    @property
    def num_compress_tokens(self) -> int:
        return self.model.num_compress_tokens

    @property
    def add_bos(self) -> bool:
        return bool(self.model.bos_ids)

    @property
    def max_length(self) -> int:
        return self.model.max_length

    @property
    def max_seq_length(self) -> int:
        return self.model.max_length

    @property
    def tokenizer(self):
        return self.model.tokenizer

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        if not all(isinstance(text, str) for text in inputs):
            raise ValueError("AutoRegEmbedEncoder encodes text only")
        # A template marks the text's place with {text}; any other prompt is a prefix, as in sentence-transformers.
        template = prompt if prompt and TEXT_FIELD in prompt else (prompt or "") + TEXT_FIELD
        input_ids, lengths = self.model.pad(self.model.encode_texts(inputs, template).input_ids)
        return {"input_ids": input_ids, "lengths": lengths}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        features["sentence_embedding"] = self.model.embed(features["input_ids"], features["lengths"], self.pooling)
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.model.hidden_size

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.model.causal_lm.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.model.tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", model_kwargs: dict | None = None,
             **kwargs) -> AutoRegEmbedEncoder:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = cls.load_config(model_name_or_path, subfolder=subfolder, revision=kwargs.get("revision"),
                                 local_files_only=kwargs.get("local_files_only", False))
        location = str(Path(model_name_or_path) / subfolder) if subfolder else model_name_or_path
        options = {key: kwargs[key] for key in ("revision", "local_files_only") if kwargs.get(key) is not None}
        tokenizer = AutoTokenizer.from_pretrained(location, **options)
        causal_lm = AutoModelForCausalLM.from_pretrained(location, **options, **(model_kwargs or {}))
        return cls(_wrap(causal_lm, tokenizer, config["num_compress_tokens"], config["add_bos"], config["max_length"]),
                   pooling=config.get("pooling", "compress-mean"))


def _wrap(causal_lm, tokenizer, num_compress_tokens: int, add_bos: bool, max_length: int) -> AutoRegEmbedModel:
    """An AutoRegEmbedModel whose compress rows are the ones written into the input embeddings."""
    model = AutoRegEmbedModel(causal_lm, tokenizer, num_compress_tokens, add_bos, max_length,
                              compress_embeddings=torch.zeros(num_compress_tokens, causal_lm.get_input_embeddings().embedding_dim))
    rows = causal_lm.get_input_embeddings().weight[model.first_compress_id : model.first_compress_id + num_compress_tokens]
    with torch.no_grad():
        model.compress_embeddings.copy_(rows)
    return model.eval()


def _prompts(entry: ModelEntry) -> dict[str, str]:
    return {role: entry.prompts[role] for role in PROMPT_ROLES if role in entry.prompts}


def export_sentence_transformers(entry: ModelEntry, folder: Path, half: bool = False) -> Path:
    """Write `entry` as a folder `SentenceTransformer(folder)` loads; returns the folder. The weights
    stay in float32 (the vectors arretrieve computes in float32) unless `half` stores them as float16."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArrError(f"{folder} already exists and is not an empty folder")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if entry.kind == "sentence-transformers":
        if half:
            raise ArrError(f"{entry.name!r} is copied as it is; --half applies to AutoRegEmbed models only")
        _copy_sentence_transformer(entry, partial)
    else:
        _write_autoregembed(entry, partial, half)
    if folder.exists():
        folder.rmdir()
    partial.rename(folder)
    return folder


def _write_autoregembed(entry: ModelEntry, target: Path, half: bool) -> None:
    from transformers.utils import logging as hf_logging

    from ..modeling.loading import load_autoregembed

    hf_logging.disable_progress_bar()
    model = load_autoregembed(entry, torch.float32, torch.device("cpu"))
    causal_lm, ids = model.causal_lm, model.compress_token_ids
    # The compress tokens become ordinary vocabulary rows, so the folder is a plain transformers model.
    if causal_lm.get_input_embeddings().num_embeddings <= ids[-1]:
        causal_lm.resize_token_embeddings(ids[-1] + 1, mean_resizing=False)
    with torch.no_grad():
        causal_lm.get_input_embeddings().weight[ids[0] : ids[-1] + 1] = model.compress_embeddings.detach()
    if half:
        causal_lm.half()
    module = AutoRegEmbedEncoder(_wrap(causal_lm, model.tokenizer, entry.num_compress_tokens, entry.add_bos,
                                       entry.max_length), pooling=entry.pooling)
    SentenceTransformer(modules=[module], prompts=_prompts(entry), default_prompt_name=DEFAULT_PROMPT,
                        similarity_fn_name="cosine").save(str(target), create_model_card=False)
    _describe(target, entry)


def _copy_sentence_transformer(entry: ModelEntry, target: Path) -> None:
    prompts = {}
    for role, template in _prompts(entry).items():
        prefix, suffix = split_template(template)
        if suffix:
            raise ArrError(f"{entry.name!r}: its {role} prompt puts text after the input ({template!r}); "
                           "sentence-transformers prompts can only precede it")
        prompts[role] = prefix
    shutil.copytree(local_folder(entry.base, entry.base_sha256), target,
                    ignore=shutil.ignore_patterns(".git", ".cache"))
    config_path = target / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["prompts"] = {**config.get("prompts", {}), **prompts}
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    _describe(target, entry)


def _describe(target: Path, entry: ModelEntry) -> None:
    """Which registry model the folder came from (the fingerprint names the exact vectors)."""
    record = {"name": entry.name, "fingerprint": entry.fingerprint, "kind": entry.kind,
              "description": entry.description}
    (target / "arretrieve_source.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
