"""One declarative record per model: everything that decides how it turns text into vectors.

Training, indexing, search and evaluation all read the same record, so they cannot disagree on
prompts, pooling or lengths. The fingerprint covers every field that changes the vectors, so an
index can refuse a query model whose entry has changed since the index was built.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ArrError
from ..hashing import sha256_json

KINDS = ("autoregembed", "sentence-transformers")
WEIGHT_FORMATS = ("base", "adapter", "full")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TEXT_FIELD = "{text}"
# Roles a text can be encoded in. i_next / i_self are the stage-2 training inputs (query side and
# positive "self" side); query / document / symmetric are inference roles.
PROMPT_ROLES = ("symmetric", "query", "document", "i_next", "i_self")
# compress-mean is AutoRegEmbed's own; last-token and mean serve contrastive baselines.
AUTOREGEMBED_POOLINGS = ("compress-mean", "last-token", "mean")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

# Fields that do not change the vectors and so stay out of the fingerprint.
_DESCRIPTIVE_FIELDS = ("name", "description", "provenance", "builtin", "dtype")


def validate_name(name: str) -> str:
    """Entry and index names become file names: only lower-case letters, digits, '.', '_' and '-'."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise ArrError(
            f"invalid name {name!r}: use 1-64 characters from a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit, and no '..'"
        )
    return name


def split_template(template: str) -> tuple[str, str]:
    """Split a prompt template around its single `{text}` slot into (prefix, suffix)."""
    if template.count(TEXT_FIELD) != 1:
        raise ArrError(f"prompt template must contain exactly one {TEXT_FIELD}: {template!r}")
    prefix, suffix = template.split(TEXT_FIELD)
    return prefix, suffix


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    # Where the base weights come from: a Hugging Face id, a local folder or .gguf file, or
    # `package:<module>/<file>` for a file shipped inside an installed Python package.
    base: str
    base_sha256: str | None = None
    revision: str | None = None
    # "base": the base as it is; "adapter": a LoRA adapter folder on top of it; "full": a folder
    # of full fine-tuned weights. Adapter/full folders also hold the trained compress-token rows.
    weights: str = "base"
    weights_path: str | None = None
    weights_sha256: str | None = None
    num_compress_tokens: int = 0
    prompts: dict[str, str] = field(default_factory=dict)
    add_bos: bool = False
    pooling: str = "mean"
    normalize: bool = True
    dim: int = 0
    dtype: str = "auto"
    max_length: int = 512
    trust_remote_code: bool = False
    description: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False

    def __post_init__(self) -> None:
        validate_name(self.name)
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.weights not in WEIGHT_FORMATS:
            problems.append(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, not {self.weights!r}")
        if self.weights != "base" and not self.weights_path:
            problems.append(f"weights={self.weights!r} needs weights_path")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if not isinstance(self.max_length, int) or self.max_length < 8:
            problems.append("max_length must be an integer >= 8")
        unknown = set(self.prompts) - set(PROMPT_ROLES)
        if unknown:
            problems.append(f"unknown prompt roles {sorted(unknown)}; known: {', '.join(PROMPT_ROLES)}")
        for role, template in self.prompts.items():
            if not isinstance(template, str) or template.count(TEXT_FIELD) != 1:
                problems.append(f"prompt {role!r} must be a string with exactly one {TEXT_FIELD}")
        if self.kind == "autoregembed":
            if self.pooling not in AUTOREGEMBED_POOLINGS:
                problems.append(f"pooling must be one of {', '.join(AUTOREGEMBED_POOLINGS)}, not {self.pooling!r}")
            if self.num_compress_tokens < 1:
                problems.append("an autoregembed entry needs num_compress_tokens >= 1")
            missing = {"query", "document", "symmetric"} - set(self.prompts)
            if missing:
                problems.append(f"an autoregembed entry needs prompts for {sorted(missing)}")
        if problems:
            raise ArrError(f"model entry {self.name!r}: " + "; ".join(problems))

    def template(self, role: str) -> str:
        """The prompt template for a role; entries without one encode the bare text."""
        if role not in PROMPT_ROLES:
            raise ArrError(f"unknown role {role!r}; known: {', '.join(PROMPT_ROLES)}")
        return self.prompts.get(role, TEXT_FIELD)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any], source: str = "entry") -> ModelEntry:
        if not isinstance(payload, dict):
            raise ArrError(f"{source}: a model entry must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = set(payload) - known - {"fingerprint"}
        if unknown:
            raise ArrError(f"{source}: unknown entry fields {sorted(unknown)}")
        try:
            return cls(**{k: v for k, v in payload.items() if k in known})
        except TypeError as exc:
            raise ArrError(f"{source}: {exc}") from None

    @property
    def fingerprint(self) -> str:
        """sha256 of every field that changes the vectors (16 hex characters shown to users)."""
        defining = {k: v for k, v in self.to_dict().items() if k not in _DESCRIPTIVE_FIELDS}
        return sha256_json(defining)[:16]
