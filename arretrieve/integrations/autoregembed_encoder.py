"""The sentence-transformers module of an exported AutoRegEmbed model, in one file that needs only
torch, transformers and sentence-transformers: `arr models export --format sentence-transformers`
copies it into the folder, so `SentenceTransformer(folder, trust_remote_code=True)` loads the model
where arretrieve is not installed (a folder pushed to the Hub, say).

It tokenises as arretrieve does (arretrieve/modeling/autoregembed_model.py):

    [BOS] + tok(prompt prefix) + tok(text, cut to fit max_length) + tok(prompt suffix) + <EMBED0..k-1>

each piece on its own, right-padded with no attention mask (causal attention: padding never reaches
a real position), and pools the last-layer states of the k compress tokens (their rows are written
into the folder's input embeddings). A prompt with `{text}` is a template; any other is a prefix.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from sentence_transformers.base.modules.input_module import InputModule

TEXT_FIELD = "{text}"
COMPRESS_TOKEN = "<EMBED{}>"
POOLINGS = ("compress-mean", "last-token", "mean")


class AutoRegEmbedEncoder(InputModule):
    """Tokenise with a prompt template, run the transformer, pool the compress states (L2-normalised)."""

    config_keys = ["num_compress_tokens", "add_bos", "max_length", "pooling"]
    config_file_name = "arretrieve_encoder.json"
    save_in_root = True

    def __init__(self, causal_lm, tokenizer, num_compress_tokens: int, add_bos: bool, max_length: int,
                 pooling: str = "compress-mean"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use one of {POOLINGS}")
        self.causal_lm, self._tokenizer = causal_lm, tokenizer
        self.num_compress_tokens, self.add_bos, self.max_length, self.pooling = (
            num_compress_tokens, bool(add_bos), max_length, pooling)
        self.bos_ids = [tokenizer.bos_token_id] if add_bos else []
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad_id is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token")
        self.pad_id = pad_id
        self.compress_token_ids = tokenizer.convert_tokens_to_ids(
            [COMPRESS_TOKEN.format(i) for i in range(num_compress_tokens)])
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in self.compress_token_ids:
            raise ValueError("the tokenizer lacks the compress tokens <EMBED0..k-1>; it is not an exported folder")

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.max_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        """Settable as on any sentence-transformers model; the prompt and compress tokens always fit."""
        self.max_length = int(value)

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return self._tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []

    def preprocess(self, inputs: Sequence[str], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        if not all(isinstance(text, str) for text in inputs):
            raise ValueError("AutoRegEmbedEncoder encodes text only")
        template = prompt if prompt and TEXT_FIELD in prompt else (prompt or "") + TEXT_FIELD
        prefix, _, suffix = template.partition(TEXT_FIELD)
        prefix_ids, suffix_ids = (self._tokenize([part])[0] if part else [] for part in (prefix, suffix))
        fixed = len(self.bos_ids) + len(prefix_ids) + len(suffix_ids) + self.num_compress_tokens
        room = self.max_length - fixed
        if room < 1:
            raise ValueError(f"max_length {self.max_length} leaves no room for text after the prompt ({fixed} tokens)")
        rows = [self.bos_ids + prefix_ids + ids[:room] + suffix_ids + self.compress_token_ids
                for ids in self._tokenize(inputs)]
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        input_ids = torch.full((len(rows), int(lengths.max())), self.pad_id, dtype=torch.long)
        for number, row in enumerate(rows):
            input_ids[number, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"input_ids": input_ids, "lengths": lengths}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        input_ids, lengths = features["input_ids"], features["lengths"]
        hidden = self.causal_lm.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state
        if self.pooling == "compress-mean":
            k = self.num_compress_tokens
            positions = lengths.unsqueeze(1) - k + torch.arange(k, device=lengths.device)
            pooled = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])).float().mean(1)
        elif self.pooling == "last-token":
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1].float()
        else:
            mask = (torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
            pooled = (hidden.float() * mask).sum(1) / lengths.unsqueeze(1)
        features["sentence_embedding"] = F.normalize(pooled, dim=-1)
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.causal_lm.get_input_embeddings().weight.shape[1]

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.causal_lm.save_pretrained(output_path, safe_serialization=safe_serialization)
        self._tokenizer.save_pretrained(output_path)
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", model_kwargs: dict | None = None,
             **kwargs) -> AutoRegEmbedEncoder:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        location = os.path.join(model_name_or_path, subfolder) if subfolder else model_name_or_path
        options = {key: kwargs[key] for key in ("revision", "local_files_only", "token", "cache_folder")
                   if kwargs.get(key) is not None}
        if "cache_folder" in options:
            options["cache_dir"] = options.pop("cache_folder")
        config = cls.load_config(model_name_or_path, subfolder=subfolder, revision=kwargs.get("revision"),
                                 local_files_only=kwargs.get("local_files_only", False))
        tokenizer = AutoTokenizer.from_pretrained(location, **options)
        causal_lm = AutoModelForCausalLM.from_pretrained(location, **options, **(model_kwargs or {}))
        return cls(causal_lm.eval(), tokenizer, config["num_compress_tokens"], config["add_bos"], config["max_length"],
                   config.get("pooling", "compress-mean"))

