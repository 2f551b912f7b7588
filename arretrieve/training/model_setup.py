"""The trainable AutoRegEmbed model: LoRA on one shared base, or a full copy plus a frozen decoder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..modeling.backbone import load_causal_lm
from ..errors import ArrError
from ..modeling.autoregembed_model import FINAL_NORM_NAMES, AutoRegEmbedModel, final_norm
from ..modeling.loading import load_compress_file, load_merged, quiet_peft, save_adapter, save_compress_rows
from ..registry import ModelEntry
from ..registry.model_folder import weights_folder
from .config import TrainConfig


def build_trainable(entry: ModelEntry, config: TrainConfig, dtype: torch.dtype, init_from: Path | None = None) -> AutoRegEmbedModel:
    """Stage-1 model from the base, or the stage-2 model continuing from stage-1 weights (`init_from`).

    LoRA: adapters on the attention and MLP projections of the one base copy, plus trainable
    compress-token rows; the decoder is that copy with adapters disabled. Full: the encoder is a
    trainable copy and the decoder a second, frozen copy of the base.
    """
    from transformers import set_seed

    set_seed(config.seed)  # LoRA initialisation draws from the global RNG: same seed, same start
    load = {"expected_sha256": entry.base_sha256, "revision": entry.revision,
            "trust_remote_code": entry.trust_remote_code, "dtype": dtype}
    k = config.num_compress_tokens or entry.num_compress_tokens
    compress_rows, state_scale = load_compress_file(init_from) if init_from else (None, None)
    if config.lora:
        from peft import LoraConfig, PeftModel, get_peft_model

        causal_lm, tokenizer = load_causal_lm(entry.base, **load)
        if init_from:
            with quiet_peft():
                causal_lm = PeftModel.from_pretrained(causal_lm, str(init_from), is_trainable=True)
        else:
            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=list(config.lora_targets), bias="none",
                              modules_to_save=[final_norm_name(causal_lm)] if config.train_norm else None)
            with quiet_peft():
                causal_lm = get_peft_model(causal_lm, lora)
        decoder = None
    elif init_from and entry.weights == "adapter" and init_from == weights_folder(entry):
        # Full fine-tuning of a LoRA-form model: its adapter merged into the base, then every weight trains.
        causal_lm, tokenizer = load_merged(entry, init_from, dtype)
    else:
        causal_lm, tokenizer = load_causal_lm(str(init_from) if init_from else entry.base,
                                              **(load if not init_from else {**load, "expected_sha256": None}))
    if not config.lora:
        causal_lm.requires_grad_(True)
        decoder, _ = load_causal_lm(entry.base, **load)
    model = AutoRegEmbedModel(causal_lm, tokenizer, k, entry.add_bos, config.max_length,
                              compress_embeddings=compress_rows, frozen_decoder_lm=decoder, state_scale=state_scale)
    if config.state_scale and model.state_scale is None:
        model.state_scale = torch.nn.Parameter(torch.tensor(model.initial_state_scale(), device=model.device))
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    if config.compile_layers:
        model.compile_layers()
    # Trainable parameters are kept in fp32 (AdamW's eps underflows in half precision); bf16
    # compute comes from autocast.
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()
    return model


def final_norm_name(causal_lm: torch.nn.Module) -> str:
    """Qualified name of the backbone's last norm (e.g. `model.norm` in Llama), whose gain sets the
    scale of the last hidden states. peft matches modules to save by name ending, so the full
    name keeps the per-layer norms out."""
    norm = final_norm(causal_lm)
    for name, module in causal_lm.named_modules():
        if norm is not None and module is norm:
            return name
    raise ArrError(f"cannot find the final norm of {type(causal_lm).__name__} (looked for {', '.join(FINAL_NORM_NAMES)}); "
                   "train it with --full instead of train_norm")


def save_trained(model: AutoRegEmbedModel, folder: Path, half: bool = False) -> None:
    """Adapter (LoRA) or full weights plus the compress-token rows, loadable by `load_autoregembed`.

    `half` stores LoRA weights and compress rows in fp16 (a few MB to ship)."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model.causal_lm, "peft_config"):
        save_adapter(model.causal_lm, folder, half)
    else:
        model.causal_lm.save_pretrained(str(folder))
        model.tokenizer.save_pretrained(str(folder))
    save_compress_rows(model, folder, half=half)


def load_trained_state(model: AutoRegEmbedModel, folder: Path) -> None:
    """Put the weights `save_trained` wrote back into a model of the same shape (for resume)."""
    from safetensors.torch import load_file

    if hasattr(model.causal_lm, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model.causal_lm, load_file(str(folder / "adapter_model.safetensors")))
    else:  # save_pretrained writes one model.safetensors or, for big models, several shards
        state = {}
        for shard in sorted(folder.glob("model*.safetensors")):
            state.update(load_file(str(shard)))
        # strict=False: tied weights (the LM head) are saved once, under the embedding's name.
        model.causal_lm.load_state_dict(state, strict=False)
    rows, state_scale = load_compress_file(folder)
    with torch.no_grad():
        model.compress_embeddings.copy_(rows.to(model.compress_embeddings))
        if model.state_scale is not None and state_scale is not None:
            model.state_scale.copy_(state_scale.reshape(()).to(model.state_scale))
