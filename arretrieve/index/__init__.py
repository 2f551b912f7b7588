from .flat_index import Hit, Searcher, build_index
from .manifest import IndexManifest
from .store import IndexStore

__all__ = ["Hit", "IndexManifest", "IndexStore", "Searcher", "build_index"]
