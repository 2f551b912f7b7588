"""The AutoRegEmbed model, its base backbones and how trained weights are loaded and exported.

Names are imported on first use: `modeling.backbone` (base resolution, hashing) is needed by the
registry and must not pull in torch.
"""

import importlib

_EXPORTS = {
    "COMPRESS_TOKEN": "autoregembed_model",
    "AutoRegEmbedModel": "autoregembed_model",
    "EncodedTexts": "autoregembed_model",
    "load_autoregembed": "loading",
    "save_compress_rows": "loading",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
