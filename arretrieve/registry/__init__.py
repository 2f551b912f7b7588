from .builtin_models import BUILTIN_ENTRIES, DEFAULT_MODEL
from .model_entry import PROMPT_ROLES, ModelEntry, split_template, validate_name
from .registry import Registry

__all__ = [
    "BUILTIN_ENTRIES",
    "DEFAULT_MODEL",
    "PROMPT_ROLES",
    "ModelEntry",
    "Registry",
    "split_template",
    "validate_name",
]
