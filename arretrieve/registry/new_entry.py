"""Making a registry entry for a new base model, with what modeling/ reads from the model itself
(`base_facts`: its dimension and whether its tokenizer has a BOS token)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..modeling.backbone import base_facts, check_base_hash, local_folder, resolve_base
from ..errors import ArrError
from .builtin_models import REFERENCE_PROMPTS
from .model_entry import KINDS, ModelEntry, validate_name


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
    if kind in KINDS:  # another kind is refused by the entry below, before any model loads
        facts = base_facts(location, kind, revision=revision, trust_remote_code=trust_remote_code)
    if kind == "autoregembed":
        fields.update(
            num_compress_tokens=num_compress_tokens,
            prompts=dict(REFERENCE_PROMPTS),
            add_bos=facts.has_bos if add_bos is None else add_bos,
            pooling="compress-mean",
            dim=facts.dim,
            description=f"{base} (untrained AutoRegEmbed encoder, {num_compress_tokens} compress tokens)",
        )
    elif kind == "sentence-transformers":
        fields.update(pooling="mean", dim=facts.dim, description=f"{base} (sentence-transformers)")
    if overrides:
        from .model_folder import refuse_untrusted_code

        fields.update(refuse_untrusted_code({**overrides, "base": base}, "the --from-json fields", trust_remote_code))
        fields["base"] = overrides.get("base", base)
        if overrides.get("weights_path") and not overrides.get("weights_sha256"):
            from ..modeling.backbone import verified_sha256  # never an entry whose weights go unchecked

            fields["weights_sha256"] = verified_sha256(Path(overrides["weights_path"]).expanduser())
    return ModelEntry.from_dict(fields, source=f"model {name!r}")
