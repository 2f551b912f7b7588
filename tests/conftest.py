"""Tiny randomly initialised models, built in the test session (no network, no ../shared)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest

# Tests never reach the network: set before transformers/huggingface_hub read it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

SENTENCES = [
    "a library for parsing yaml files in python",
    "command line tool to convert images between formats",
    "development files for the compression library",
    "documentation for the web server and its modules",
    "fonts with wide unicode coverage for the desktop",
    "the quick brown fox jumps over the lazy dog",
]


def _byte_level_tokenizer(with_bos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = (["<s>"] if with_bos else []) + ["</s>", "<pad>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>" if with_bos else None, eos_token="</s>", pad_token="<pad>",
        # A chat model's prompt format, as a released instruct base has (pseudo-queries from text).
        # It ends on a special token: after plain text this random model writes only spaces.
        chat_template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                      "{% if add_generation_prompt %}<pad>{% endif %}",
    )


def build_tiny_llama(folder: Path, with_bos: bool = True, seed: int = 0) -> Path:
    """A 2-layer Llama with hidden size 64 and a byte-level BPE tokenizer, saved as a model folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _byte_level_tokenizer(with_bos)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_sentence_transformer(folder: Path) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    raw = Tokenizer(tok_models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer()
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    bert_dir = folder / "bert"
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu").save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own toolkit home and index folder."""
    monkeypatch.setenv("ARR_HOME", str(tmp_path / "arr-home"))
    monkeypatch.setenv("ARR_INDEXES", str(tmp_path / "indexes"))
    return tmp_path / "arr-home"


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_no_bos_dir(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-nobos"), with_bos=False)


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory) -> Path:
    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture
def registry(tiny_llama_dir):
    """A registry (in the test's own home) holding the tiny Llama as `tiny`."""
    from arretrieve.registry import Registry

    registry = Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    return registry


def tiny_entry(base: Path, name: str = "tiny", **overrides):
    from arretrieve.registry import ModelEntry
    from arretrieve.registry.builtin_models import REFERENCE_PROMPTS

    fields = dict(
        name=name,
        kind="autoregembed",
        base=str(base),
        num_compress_tokens=3,
        prompts=dict(REFERENCE_PROMPTS),
        add_bos=True,
        pooling="compress-mean",
        dim=64,
        dtype="float32",
        max_length=160,
    )
    fields.update(overrides)
    return ModelEntry(**fields)


def write_beir_corpus(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return folder


class Crash(Exception):
    """What `crash_at_step` raises: a training run killed mid-way."""


@contextlib.contextmanager
def crash_at_step(step: int):
    """Training raises Crash right after logging this global step (a kill, for resume tests); the
    with-block must expect it."""
    from arretrieve.training.trainer import MetricsLog

    original = MetricsLog.on_log

    def crashing(self, args, state, control, **kwargs):
        original(self, args, state, control, **kwargs)
        if state.global_step == step:
            raise Crash

    MetricsLog.on_log = crashing
    try:
        with pytest.raises(Crash):
            yield
    finally:
        MetricsLog.on_log = original
