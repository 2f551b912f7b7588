"""Building and searching a FAISS inner-product index over normalised vectors (cosine)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import __version__
from ..corpus import Document, corpus_file, read_corpus
from ..errors import ArrError
from ..hashing import sha256_file
from ..registry import Registry
from .manifest import IndexManifest
from .store import IndexStore

INDEX_FILE = "index.faiss"
DOCS_FILE = "docs.jsonl"


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ArrError("faiss is not installed: pip install 'arretrieve[cpu]' (or [gpu])") from None
    return faiss


def build_index(
    corpus_path: Path,
    *,
    name: str | None = None,
    model: str | None = None,
    store: IndexStore | None = None,
    registry: Registry | None = None,
    batch_size: int = 16,
    device: str = "auto",
    dtype: str | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> IndexManifest:
    from ..encoding import load_embedder

    store = store or IndexStore()
    registry = registry or Registry()
    source = corpus_file(corpus_path)
    name = name or (corpus_path.resolve().name if corpus_path.is_dir() else corpus_path.stem).lower()
    folder = store.path(name)
    if folder.exists() and not overwrite:
        raise ArrError(f"index {name!r} already exists in {store.root}; pass --overwrite or another --name")
    documents = read_corpus(corpus_path)
    entry = registry.resolve(model)
    embedder = load_embedder(entry, device=device, dtype=dtype)
    vectors = embedder.encode([d.full_text for d in documents], role="document", batch_size=batch_size, show_progress=show_progress)

    faiss = _faiss()
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    manifest = IndexManifest(
        name=name,
        model=entry.name,
        model_fingerprint=entry.fingerprint,
        encoder={**embedder.describe(), "batch_size": batch_size, "truncated": embedder.last_stats.truncated},
        dim=int(vectors.shape[1]),
        metric="inner_product",
        count=len(documents),
        index_type="flat",
        index_params={},
        corpus={"path": str(source.resolve()), "sha256": sha256_file(source), "documents": len(documents)},
        toolkit_version=__version__,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    store.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=store.root))
    try:
        faiss.write_index(index, str(staging / INDEX_FILE))
        with open(staging / DOCS_FILE, "w", encoding="utf-8") as handle:
            for doc in documents:
                handle.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
        manifest.save(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


@dataclass
class Hit:
    rank: int
    score: float
    id: str
    title: str
    text: str


class Searcher:
    """Search one index with the model that built it (refusing a changed registry entry)."""

    def __init__(self, folder: Path, registry: Registry | None = None, device: str = "auto"):
        from ..encoding import load_embedder

        self.folder = folder
        self.manifest = IndexManifest.load(folder)
        entry = (registry or Registry()).get(self.manifest.model)
        if entry.fingerprint != self.manifest.model_fingerprint:
            raise ArrError(
                f"index {self.manifest.name!r} was built with model {entry.name!r} fingerprint "
                f"{self.manifest.model_fingerprint}, but the registry entry now has fingerprint {entry.fingerprint}: "
                "its vectors would not match new query vectors; rebuild the index with `arr index --overwrite`"
            )
        faiss = _faiss()
        try:
            self.index = faiss.read_index(str(folder / INDEX_FILE))
        except RuntimeError:
            raise ArrError(f"{folder / INDEX_FILE} is missing or corrupted; rebuild the index with `arr index`") from None
        self.documents = read_corpus(folder / DOCS_FILE)
        if self.index.ntotal != len(self.documents) or self.index.ntotal != self.manifest.count:
            raise ArrError(f"index {self.manifest.name!r} is inconsistent (vectors, documents and manifest disagree); rebuild it")
        self.embedder = load_embedder(entry, device=device, dtype=self.manifest.encoder.get("dtype"))

    def search(self, queries: Sequence[str], k: int = 10) -> list[list[Hit]]:
        if any(not q.strip() for q in queries):
            raise ArrError("empty query")
        vectors = self.embedder.encode(list(queries), role="query")
        scores, ids = self.index.search(vectors, min(k, self.index.ntotal))
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = []
            for rank, (score, idx) in enumerate(((s, i) for s, i in zip(row_scores, row_ids) if i >= 0), start=1):
                doc: Document = self.documents[idx]
                hits.append(Hit(rank, float(score), doc.id, doc.title, doc.text))
            results.append(hits)
        return results
