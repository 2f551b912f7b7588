"""Building an AutoRegEmbedModel from a registry entry, and saving trained weights for one.

Trained weights live in a folder:
  adapter: a peft LoRA adapter (`adapter_config.json`, `adapter_model.safetensors`) + `compress_embeddings.safetensors`
  full:    a transformers model folder (fine-tuned backbone) + `compress_embeddings.safetensors`
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import torch

from .backbone import load_causal_lm, save_model_folder
from ..errors import ArrError
from ..home import merged_cache_dir
from ..registry.model_entry import ModelEntry
from ..registry.model_folder import COMPRESS_FILE, weights_folder
from .autoregembed_model import AutoRegEmbedModel

MERGED_MARKER = "arr_merged.json"
log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Two peft warnings about our own setup, dropped where they arise: peft reads transformers'
    deprecated `is_gradient_checkpointing` while wrapping a model (a FutureWarning on every command
    that loads an adapter), and when saving an adapter it looks for the base's config.json to see
    whether the vocabulary changed, which a `package:` GGUF base has none of (our compress rows are
    saved apart, so nothing is lost). An adapter on a tied embedding (a low-rank export,
    `low_rank.py`) makes peft warn that merging may untie the LM head: the merge adds the
    difference in place to the one shared tensor, and an encoder never runs the head."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="Could not find a config file in", category=UserWarning)
        warnings.filterwarnings("ignore", message="Model has `tie_word_embeddings=True` and a tied layer", category=UserWarning)
        warnings.filterwarnings("ignore", message="Model with `tie_word_embeddings=True` and the tied_target_modules",
                                category=UserWarning)
        yield


def load_compress_file(folder: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(compress-token rows, the learned state scale or None) of a trained-weights folder."""
    from safetensors.torch import load_file

    path = folder / COMPRESS_FILE
    if not path.is_file():
        raise ArrError(f"{folder} has no {COMPRESS_FILE}")
    try:
        tensors = load_file(str(path))
        return tensors["compress_embeddings"], tensors.get("state_scale")
    except (OSError, KeyError, ValueError) as exc:
        raise ArrError(f"{path} is damaged ({exc})") from None


def load_autoregembed(entry: ModelEntry, dtype: torch.dtype, device: torch.device,
                      frozen_decoder: bool = False) -> AutoRegEmbedModel:
    """The model as trained, for encoding. `frozen_decoder` also loads the released base as the
    decoder that scores targets after the states (the compression probe needs it): without it a
    trained model's `score_padded` runs through its own fine-tuned (or merged) weights, which is
    not the decoder it was trained against. Encoding never uses the decoder."""
    if entry.kind != "autoregembed":
        raise ArrError(f"model {entry.name!r} is of kind {entry.kind!r}, not autoregembed")
    common = {"revision": entry.revision, "trust_remote_code": entry.trust_remote_code, "dtype": dtype}
    compress_rows = state_scale = None
    if entry.weights == "full":
        folder = weights_folder(entry)
        causal_lm, tokenizer = load_causal_lm(str(folder), **common)
        compress_rows, state_scale = load_compress_file(folder)
    else:
        if entry.weights == "adapter":
            folder = weights_folder(entry)
            causal_lm, tokenizer = load_merged(entry, folder, dtype)
            compress_rows, state_scale = load_compress_file(folder)
        else:
            causal_lm, tokenizer = load_causal_lm(entry.base, expected_sha256=entry.base_sha256, **common)
    decoder, decoder_tokenizer = None, tokenizer
    if frozen_decoder and entry.weights in ("full", "adapter"):
        decoder, decoder_tokenizer = load_causal_lm(entry.base, expected_sha256=entry.base_sha256, **common)
    model = AutoRegEmbedModel(
        causal_lm,
        tokenizer,
        num_compress_tokens=entry.num_compress_tokens,
        add_bos=entry.add_bos,
        max_length=entry.max_length,
        compress_embeddings=compress_rows,
        state_scale=state_scale,
        frozen_decoder_lm=decoder,
        decoder_chat_template=decoder_tokenizer.chat_template,
    )
    return model.to(device).eval()


def load_merged(entry: ModelEntry, folder: Path, dtype: torch.dtype):
    """The base with the adapter merged in (inference then costs what the base costs; full
    fine-tuning continues from it), cached per fingerprint and dtype: later loads skip importing
    peft and merging (about 1.5 s of a cold `arr search`). The cached tensors are the merge's own,
    so vectors are the same either way."""
    common = {"revision": entry.revision, "trust_remote_code": entry.trust_remote_code, "dtype": dtype}
    cache = merged_cache_dir() / f"{entry.fingerprint}-{str(dtype).removeprefix('torch.')}"
    if (cache / MERGED_MARKER).is_file():
        return load_causal_lm(str(cache), trust_remote_code=entry.trust_remote_code, dtype=dtype)
    from peft import PeftModel

    causal_lm, tokenizer = load_causal_lm(entry.base, expected_sha256=entry.base_sha256, **common)
    with quiet_peft():
        causal_lm = PeftModel.from_pretrained(causal_lm, str(folder), is_trainable=False).merge_and_unload()
    try:
        save_model_folder(cache, causal_lm, tokenizer, MERGED_MARKER, {"fingerprint": entry.fingerprint})
    except OSError as exc:  # a cache that cannot be written only costs the next load its time
        log.info("could not cache the merged model in %s: %s", cache, exc)
    return causal_lm, tokenizer


def save_adapter(peft_lm: torch.nn.Module, folder: Path, half: bool = False) -> None:
    """A peft model's adapter (its config and weights; fp16 tensors when `half`, a few MB to ship)."""
    # Never the whole embedding matrix: an adapter on it carries its difference as LoRA factors.
    with quiet_peft():
        if not half:
            peft_lm.save_pretrained(str(folder), save_embedding_layers=False)
            return
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        state = get_peft_model_state_dict(peft_lm, save_embedding_layers=False)
        peft_lm.peft_config["default"].save_pretrained(str(folder))
        save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()},
                  str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})


def save_compress_rows(model: AutoRegEmbedModel, folder: Path, half: bool = False) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rows = model.compress_embeddings.detach().to(torch.float16 if half else torch.float32).cpu().contiguous()
    tensors = {"compress_embeddings": rows}
    if model.state_scale is not None:
        tensors["state_scale"] = model.state_scale.detach().float().cpu().reshape(1)
    save_file(tensors, str(folder / COMPRESS_FILE))

