import pytest
import torch

from arretrieve.errors import ArrError
from arretrieve.modeling import AutoRegEmbedModel
from arretrieve.modeling.loading import load_autoregembed
from conftest import tiny_entry


def target_ids(model, texts):
    """tok(text) + [EOS] per text: the decoder's targets."""
    return model.encode_targets(texts).input_ids


def score_targets(model, compressed, ids):
    """(summed, mean per token) log p(target | compressed) from the frozen decoder."""
    targets, lengths = model.pad(ids)
    summed = model.score_padded(compressed, targets, lengths)
    return summed, summed / lengths


@pytest.fixture
def model(tiny_llama_dir):
    return load_autoregembed(tiny_entry(tiny_llama_dir), torch.float32, torch.device("cpu"))


def test_compress_tokens_follow_the_last_real_token(model):
    template = "{text}\nThis sentence means in one word: \u201c"
    encoded = model.encode_texts(["a library for parsing yaml files in python", "fonts"], template)
    k = model.num_compress_tokens
    for ids in encoded.input_ids:
        assert ids[0] == model.tokenizer.bos_token_id
        assert ids[-k:] == model.compress_token_ids
        assert model.pad_id not in ids[-k - 1 :]
    input_ids, lengths = model.pad(encoded.input_ids)
    # Right padding whatever the tokenizer says: compress tokens at [len-k, len), padding after.
    for row, length in enumerate(lengths.tolist()):
        assert input_ids[row, length - k : length].tolist() == model.compress_token_ids
        assert (input_ids[row, length:] == model.pad_id).all()


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_tokenizer_padding_side_does_not_matter(model, padding_side):
    texts = ["a library for parsing yaml files in python", "fonts", "the quick brown fox"]
    template = "{text}\nThis sentence means in one word: \u201c"
    model.tokenizer.padding_side = "right"
    reference = model.pool(model.compress(*model.pad(model.encode_texts(texts, template).input_ids)))
    model.tokenizer.padding_side = padding_side
    encoded = model.encode_texts(texts, template)
    vectors = model.pool(model.compress(*model.pad(encoded.input_ids)))
    assert torch.equal(vectors, reference)


def test_truncation_cuts_the_text_and_keeps_the_prompt_suffix(tiny_llama_dir):
    model = load_autoregembed(tiny_entry(tiny_llama_dir, max_length=48), torch.float32, torch.device("cpu"))
    template = "Passage: {text} The word is: \u201c"
    prefix_ids = model.tokenizer("Passage: ", add_special_tokens=False)["input_ids"]
    suffix_ids = model.tokenizer(" The word is: \u201c", add_special_tokens=False)["input_ids"]
    long_text = " ".join(["the quick brown fox jumps over the lazy dog"] * 10)
    encoded = model.encode_texts([long_text, "fonts"], template)
    long_ids, short_ids = encoded.input_ids
    assert encoded.truncated == [True, False]
    assert len(long_ids) == 48
    k = model.num_compress_tokens
    assert long_ids[: 1 + len(prefix_ids)] == [model.tokenizer.bos_token_id] + prefix_ids
    assert long_ids[-k - len(suffix_ids) :] == suffix_ids + model.compress_token_ids
    assert short_ids[-k - len(suffix_ids) :] == suffix_ids + model.compress_token_ids


def test_prompt_longer_than_max_length_is_refused(tiny_llama_dir):
    model = load_autoregembed(tiny_entry(tiny_llama_dir, max_length=8), torch.float32, torch.device("cpu"))
    with pytest.raises(ArrError, match="no room"):
        model.encode_texts(["x"], "a very long prompt prefix that never fits {text}")


def test_tokenizer_without_bos(tiny_llama_no_bos_dir):
    entry = tiny_entry(tiny_llama_no_bos_dir, add_bos=False)
    model = load_autoregembed(entry, torch.float32, torch.device("cpu"))
    ids = model.encode_texts(["fonts"], "{text}")
    text_ids = model.tokenizer("fonts", add_special_tokens=False)["input_ids"]
    assert ids.input_ids[0] == text_ids + model.compress_token_ids
    vector = model.pool(model.compress(*model.pad(ids.input_ids)))
    assert torch.isfinite(vector).all()
    with pytest.raises(ArrError, match="has none"):
        load_autoregembed(tiny_entry(tiny_llama_no_bos_dir, add_bos=True), torch.float32, torch.device("cpu"))


def test_compress_rows_start_deterministic(tiny_llama_dir):
    first = load_autoregembed(tiny_entry(tiny_llama_dir), torch.float32, torch.device("cpu"))
    second = load_autoregembed(tiny_entry(tiny_llama_dir), torch.float32, torch.device("cpu"))
    assert torch.equal(first.compress_embeddings, second.compress_embeddings)


def test_decoder_scores_are_log_probabilities_of_target_plus_eos(model):
    compressed = model.compress(*model.pad(model.encode_texts(["fonts", "yaml"], "{text}").input_ids))
    targets = target_ids(model, ["fonts for the desktop", "a"])
    assert all(ids[-1] == model.eos_id for ids in targets)
    summed, mean = score_targets(model, compressed, targets)
    assert (summed < 0).all()
    assert torch.allclose(mean, summed / torch.tensor([len(t) for t in targets]))
    # Scoring one example alone gives the same numbers as inside the padded batch.
    alone, _ = score_targets(model, compressed[1:], targets[1:])
    assert torch.allclose(alone, summed[1:], atol=1e-5)


def test_decoder_is_the_plain_base_model(model, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    compressed = torch.randn(1, model.num_compress_tokens, model.hidden_size)
    targets = target_ids(model, ["fonts for the desktop"])
    summed, _ = score_targets(model, compressed, targets)
    ids = torch.tensor(targets)
    inputs = torch.cat([compressed, base.get_input_embeddings()(ids)], 1)
    logits = base(inputs_embeds=inputs).logits[0, model.num_compress_tokens - 1 : -1]
    expected = torch.log_softmax(logits, -1).gather(1, ids[0].unsqueeze(1)).sum()
    assert torch.allclose(summed[0], expected, atol=1e-4)


def _encoder_loss(model):
    compressed = model.compress(*model.pad(model.encode_texts(["a library for parsing yaml"], "{text}").input_ids))
    summed, _ = score_targets(model, compressed, target_ids(model, ["yaml parser"]))
    return -summed.sum()


def test_full_finetuning_gradients_reach_only_the_encoder(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    encoder_lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    decoder_lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    model = AutoRegEmbedModel(
        encoder_lm, AutoTokenizer.from_pretrained(tiny_llama_dir), 3, True, 64, frozen_decoder_lm=decoder_lm
    )
    _encoder_loss(model).backward()
    assert all(p.grad is None for p in decoder_lm.parameters())
    assert not any(p.requires_grad for p in decoder_lm.parameters())
    assert model.compress_embeddings.grad is not None and model.compress_embeddings.grad.abs().sum() > 0
    layer_grads = [p.grad for n, p in encoder_lm.named_parameters() if "layers" in n]
    assert all(g is not None for g in layer_grads) and sum(g.abs().sum() for g in layer_grads) > 0


def test_lora_shares_one_base_and_the_decoder_runs_without_adapters(tiny_llama_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    peft_lm = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model = AutoRegEmbedModel(peft_lm, AutoTokenizer.from_pretrained(tiny_llama_dir), 3, True, 64)
    _encoder_loss(model).backward()
    base_params = [p for n, p in peft_lm.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base_params)
    lora_grads = [p.grad for n, p in peft_lm.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None for g in lora_grads)
    assert model.compress_embeddings.grad is not None
    # With adapters disabled the shared weights score exactly like the untouched base model.
    compressed = torch.randn(1, 3, 64)
    targets = target_ids(model, ["yaml parser"])
    with torch.no_grad():
        summed, _ = score_targets(model, compressed, targets)
        frozen = AutoRegEmbedModel(reference, AutoTokenizer.from_pretrained(tiny_llama_dir), 3, True, 64)
        expected, _ = score_targets(frozen, compressed, targets)
    assert torch.allclose(summed, expected, atol=1e-5)
