from .builder import BuildOptions, add_to_index, build_index
from .faiss_index import INDEX_TYPES
from .manifest import IndexManifest
from .searcher import Hit, Searcher
from .store import IndexStore

__all__ = ["INDEX_TYPES", "BuildOptions", "Hit", "IndexManifest", "IndexStore", "Searcher", "add_to_index", "build_index"]
