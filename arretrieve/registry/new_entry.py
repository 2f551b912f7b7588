"""Making a registry entry for a new base model, reading what it can from the model itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..modeling.backbone import call_loader, check_base_hash, local_folder, resolve_base
from ..errors import ArrError
from .builtin_models import REFERENCE_PROMPTS
from .model_entry import ModelEntry, validate_name


def read_overrides(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ArrError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ArrError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None
    if not isinstance(payload, dict):
        raise ArrError(f"{path}: expected a JSON object of entry fields")
    return payload


def new_entry(
    name: str,
    *,
    base: str,
    kind: str = "autoregembed",
    num_compress_tokens: int = 5,
    max_length: int = 512,
    dtype: str = "auto",
    add_bos: bool | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    overrides: dict[str, Any] | None = None,
) -> ModelEntry:
    validate_name(name)
    base_sha256 = check_base_hash(None, resolve_base(base))
    location = local_folder(base, base_sha256)
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "base": base,
        "base_sha256": base_sha256,
        "revision": revision,
        "max_length": max_length,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "provenance": {"training": "none (registered base)"},
    }
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    if kind == "autoregembed":
        from transformers import AutoConfig, AutoTokenizer

        config = call_loader(AutoConfig.from_pretrained, location, **common)
        tokenizer = call_loader(AutoTokenizer.from_pretrained, location, **common)
        fields.update(
            num_compress_tokens=num_compress_tokens,
            prompts=dict(REFERENCE_PROMPTS),
            add_bos=tokenizer.bos_token_id is not None if add_bos is None else add_bos,
            pooling="compress-mean",
            dim=config.hidden_size,
            description=f"{base} (untrained AutoRegEmbed encoder, {num_compress_tokens} compress tokens)",
        )
    elif kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = call_loader(SentenceTransformer, location, device="cpu", **common)
        fields.update(pooling="mean", dim=model.get_embedding_dimension(), description=f"{base} (sentence-transformers)")
    if overrides:
        from .model_folder import refuse_untrusted_code

        fields.update(refuse_untrusted_code({**overrides, "base": base}, "the --from-json fields", trust_remote_code))
        fields["base"] = overrides.get("base", base)
        if overrides.get("weights_path") and not overrides.get("weights_sha256"):
            from ..modeling.backbone import verified_sha256  # never an entry whose weights go unchecked

            fields["weights_sha256"] = verified_sha256(Path(overrides["weights_path"]).expanduser())
    return ModelEntry.from_dict(fields, source=f"model {name!r}")
