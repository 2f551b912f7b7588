from .autoregembed_model import COMPRESS_TOKEN, AutoRegEmbedModel, EncodedTexts
from .loading import load_autoregembed, save_compress_rows

__all__ = ["COMPRESS_TOKEN", "AutoRegEmbedModel", "EncodedTexts", "load_autoregembed", "save_compress_rows"]
