"""Registry models as sentence-transformers folders: `SentenceTransformer(folder)` gives arretrieve's vectors.

An AutoRegEmbed folder is a plain transformers model (LoRA merged, the compress tokens added to the
tokenizer and their rows written into the input embeddings) plus one module, `AutoRegEmbedEncoder`,
that tokenises as arretrieve does (each piece on its own, only the text cut, the compress tokens
last) and pools the compress states. The module's class lives in this installed package; the folder
holds no code. The folders are written by export/sentence_transformers.py. Prompts are the entry's templates (`{text}` marks where the text goes), stored as the
folder's sentence-transformers prompts, so `encode_query` / `encode_document` pick them by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import ArrError

try:
    from sentence_transformers.base.modules.input_module import InputModule
except ImportError:
    raise ArrError("sentence-transformers folders need sentence-transformers >= 6: pip install 'arretrieve[interop]'") from None
from ..modeling.autoregembed_model import AutoRegEmbedModel
from ..registry.model_entry import TEXT_FIELD

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
        return cls(wrap_model(causal_lm, tokenizer, config["num_compress_tokens"], config["add_bos"], config["max_length"]),
                   pooling=config.get("pooling", "compress-mean"))


def wrap_model(causal_lm, tokenizer, num_compress_tokens: int, add_bos: bool, max_length: int) -> AutoRegEmbedModel:
    """An AutoRegEmbedModel whose compress rows are the ones written into the input embeddings."""
    model = AutoRegEmbedModel(causal_lm, tokenizer, num_compress_tokens, add_bos, max_length,
                              compress_embeddings=torch.zeros(num_compress_tokens, causal_lm.get_input_embeddings().embedding_dim))
    rows = causal_lm.get_input_embeddings().weight[model.first_compress_id : model.first_compress_id + num_compress_tokens]
    with torch.no_grad():
        model.compress_embeddings.copy_(rows)
    return model.eval()
