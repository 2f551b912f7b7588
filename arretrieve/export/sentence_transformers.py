"""A registry model as a folder `SentenceTransformer(folder)` loads: an AutoRegEmbed model merged into a
plain transformers model with the module it needs (integrations/autoregembed_encoder.py, copied in),
or a sentence-transformers base copied with the entry's prompts."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import torch

from ..errors import ArrError
from ..home import write_folder_atomic
# First: it says how to install sentence-transformers where it is missing.
from ..integrations.sentence_transformers_folder import DEFAULT_PROMPT, EXPORTED_ROLES, AutoRegEmbedEncoder
from ..modeling.backbone import local_folder
from ..registry.model_entry import ModelEntry, split_template
from sentence_transformers import SentenceTransformer  # noqa: E402 - after the check above

SOURCE_FILE = "arretrieve_source.json"  # which registry model the folder came from, written last


def _prompts(entry: ModelEntry) -> dict[str, str]:
    return {role: entry.prompts[role] for role in EXPORTED_ROLES if role in entry.prompts}


def export_sentence_transformers(entry: ModelEntry, folder: Path, half: bool = False) -> Path:
    """Write `entry` as a folder `SentenceTransformer(folder)` loads; returns the folder. The weights
    stay in float32 (the vectors arretrieve computes in float32) unless `half` stores them as float16."""
    if entry.kind == "sentence-transformers" and half:
        raise ArrError(f"{entry.name!r} is copied as it is; --half applies to AutoRegEmbed models only")

    def write(staging: Path) -> None:
        if entry.kind == "sentence-transformers":
            _copy_sentence_transformer(entry, staging)
        else:
            _write_autoregembed(entry, staging, half)

    source = {"name": entry.name, "fingerprint": entry.fingerprint, "kind": entry.kind, "description": entry.description}
    write_folder_atomic(folder, write, SOURCE_FILE, source, existing="refuse")
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
    module = AutoRegEmbedEncoder(causal_lm.eval(), model.tokenizer, entry.num_compress_tokens, entry.add_bos,
                                 entry.max_length, entry.pooling)
    SentenceTransformer(modules=[module], prompts=_prompts(entry), default_prompt_name=DEFAULT_PROMPT,
                        similarity_fn_name="cosine").save(str(target), create_model_card=False)
    # The folder carries the module's code and names it by its file, so it loads without arretrieve.
    code = Path(inspect.getfile(AutoRegEmbedEncoder))
    shutil.copyfile(code, target / code.name)
    modules_file = target / "modules.json"
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    for module_record in modules:
        if module_record["type"].endswith(".AutoRegEmbedEncoder"):
            module_record["type"] = f"{code.stem}.AutoRegEmbedEncoder"
    modules_file.write_text(json.dumps(modules, indent=2) + "\n", encoding="utf-8")


def _copy_sentence_transformer(entry: ModelEntry, target: Path) -> None:
    prompts = {}
    for role, template in _prompts(entry).items():
        prefix, suffix = split_template(template)
        if suffix:
            raise ArrError(f"{entry.name!r}: its {role} prompt puts text after the input ({template!r}); "
                           "sentence-transformers prompts can only precede it")
        prompts[role] = prefix
    shutil.copytree(local_folder(entry.base, entry.base_sha256), target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".git", ".cache"))
    config_path = target / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config["prompts"] = {**config.get("prompts", {}), **prompts}
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
