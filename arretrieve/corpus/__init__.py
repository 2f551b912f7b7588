"""Reading corpora: formats, validation, chunking."""

from .chunking import CHUNK_SEPARATOR, Chunking
from .document import Document
from .source import CorpusScan, CorpusSource, FieldNames

__all__ = ["CHUNK_SEPARATOR", "Chunking", "CorpusScan", "CorpusSource", "Document", "FieldNames"]
