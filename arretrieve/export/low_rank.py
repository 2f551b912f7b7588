"""A fully fine-tuned model as a small LoRA adapter: the truncated SVD of its difference from the base.

Each weight matrix that changed (attention and MLP projections, the token embedding) becomes a
rank-r LoRA pair B·A with B·A the best rank-r approximation of W_tuned − W_base (Eckart–Young),
and every other changed module (the norms: a few hundred numbers each) is saved whole as a peft
module to save. The result is an ordinary adapter folder: the registry loads and merges it like a
trained one. What the truncation keeps is reported as the share of the difference's squared
Frobenius norm, overall and for the embedding apart (whose difference is spread over the rows of
the tokens seen in training, so it is the least low-rank).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ArrError
from ..registry.model_entry import ModelEntry
from ..modeling.backbone import load_causal_lm
from ..modeling.loading import quiet_peft, save_adapter


def write_low_rank_adapter(entry: ModelEntry, source: Path, target: Path, rank: int, half: bool) -> dict:
    """Write the rank-`rank` adapter of the full weights in `source` (of `entry`, on `entry.base`)
    into `target`; returns what it kept ({"rank", "kept", "kept_embedding", "modules_saved_whole"})."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    if rank < 1:
        raise ArrError(f"--low-rank must be at least 1, not {rank}")
    common = {"revision": entry.revision, "trust_remote_code": entry.trust_remote_code, "dtype": torch.float32}
    base_lm, _ = load_causal_lm(entry.base, expected_sha256=entry.base_sha256, **common)
    tuned_lm, _ = load_causal_lm(str(source), **common)
    tuned = dict(tuned_lm.named_parameters())
    base_params = dict(base_lm.named_parameters())
    if tuned.keys() != base_params.keys() or any(tuned[k].shape != p.shape for k, p in base_params.items()):
        raise ArrError(f"{source} does not have the parameters of its base {entry.base} (another architecture, a "
                       "resized vocabulary or untied embeddings): it cannot be written as a difference from it")

    factored, whole = {}, set()
    for name, module in base_lm.named_modules():
        # A tied alias (the LM head sharing the embedding) is the same tensor: written once, as the embedding.
        own = {k: p for k, p in module.named_parameters(recurse=False) if (f"{name}.{k}" if name else k) in base_params}
        changed = [k for k, p in own.items() if not torch.equal(p, tuned[f"{name}.{k}" if name else k])]
        if not changed:
            continue
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)) and changed == ["weight"]:
            factored[name] = module
        elif isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            raise ArrError(f"{name}: its {', '.join(changed)} changed; a low-rank adapter carries weight matrices "
                           "only (export in full instead)")
        else:
            whole.add(name)
    if not factored and not whole:
        raise ArrError(f"{source} equals its base: there is no difference to write")

    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none",  # alpha = r: scaling 1
                        target_modules=sorted({n.rsplit(".", 1)[-1] for n in factored}),
                        modules_to_save=sorted(whole) or None)
    with quiet_peft():
        adapter = get_peft_model(base_lm, config)
    energy = kept = embedding_energy = embedding_kept = 0.0
    with torch.no_grad():
        for qualified, module in adapter.named_modules():
            if not isinstance(module, LoraLayer):
                continue
            name = qualified.removeprefix("base_model.model.")
            difference = tuned[f"{name}.weight"] - base_params[f"{name}.weight"]
            is_embedding = "default" in module.lora_embedding_A
            # LoRA's delta is B·A (out × in) for a Linear and (B·A)ᵀ for an Embedding.
            b, a, total, captured = _factor(difference.T if is_embedding else difference, rank)
            if is_embedding:
                module.lora_embedding_A["default"].copy_(a)
                module.lora_embedding_B["default"].copy_(b)
                embedding_energy, embedding_kept = embedding_energy + total, embedding_kept + captured
            else:
                module.lora_A["default"].weight.copy_(a)
                module.lora_B["default"].weight.copy_(b)
            energy, kept = energy + total, kept + captured
        for qualified, module in adapter.named_modules():
            saved = getattr(module, "modules_to_save", None)
            if saved is None or not isinstance(saved, torch.nn.ModuleDict):
                continue
            name = qualified.removeprefix("base_model.model.")
            for key, parameter in saved["default"].named_parameters():
                parameter.copy_(tuned[f"{name}.{key}"])
    save_adapter(adapter, target, half)
    return {"rank": rank, "kept": round(kept / energy, 4) if energy else 1.0,
            "kept_embedding": round(embedding_kept / embedding_energy, 4) if embedding_energy else None,
            "modules_saved_whole": len(whole)}


def _factor(difference: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """(B, A, ‖D‖², ‖B·A‖²) with B·A the best rank-`rank` approximation of D; zero-padded when D
    has fewer singular values than `rank`."""
    u, s, vh = torch.linalg.svd(difference, full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    b = torch.zeros(difference.shape[0], rank)
    a = torch.zeros(rank, difference.shape[1])
    b[:, :r] = u[:, :r] * root
    a[:r] = root[:, None] * vh[:r]
    return b, a, float((s ** 2).sum()), float((s[:r] ** 2).sum())
