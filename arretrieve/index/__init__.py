from .builder import add_to_index, build_index
from .faiss_index import INDEX_TYPES, IndexSpec
from .manifest import IndexManifest
from .searcher import Hit, Searcher
from .store import IndexStore

__all__ = ["INDEX_TYPES", "Hit", "IndexSpec", "IndexManifest", "IndexStore", "Searcher", "add_to_index", "build_index"]
