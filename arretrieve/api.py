"""The Python API: what `arr index`, `arr search` and encoding do, as calls on plain Python values.

    import arretrieve
    index = arretrieve.Index.build(["PyYAML parses YAML", "ImageMagick converts images"], name="notes")
    hits = index.search("yaml parser", k=5)      # [Hit(rank=1, score=…, id='0', title='', text='PyYAML…'), …]
    vectors = arretrieve.encode(["yaml parser"], role="query")   # (1, dim) float32, L2-normalised
    scores = arretrieve.similarity(arretrieve.encode("yaml", role="query"), vectors)   # (1, 1) cosine
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Sequence


from .corpus import Document
from .errors import ArrError
from .encoding import EncodingOptions
from .index import Hit, IndexManifest, IndexSpec, IndexStore, Searcher, build_index
from .index.manifest import MANIFEST_FILE
from .registry import Registry


class Index:
    """A built index, opened for search; its model loads on the first query and stays loaded."""

    def __init__(self, name: str | Path | None = None, *, index_dir: str | Path | None = None, device: str = "auto",
                 registry: Registry | None = None, search_params: dict[str, int] | None = None):
        """`name`: an index in the store (`index_dir`, else $ARR_INDEXES or ./indexes; None: the only
        one there), or the path of an index folder wherever it lies (a Path, or a str with a `/`).
        `search_params`: nprobe, ef_search, rerank_factor for every search (a call's own win)."""
        if isinstance(name, Path) or (isinstance(name, str) and ("/" in name or os.sep in name)):
            folder = Path(name).expanduser()
            if not (folder / MANIFEST_FILE).is_file():
                raise ArrError(f"{folder} is not an index folder (no {MANIFEST_FILE}); build one with `arr index`")
        else:
            folder = IndexStore(Path(index_dir) if index_dir else None).resolve(name)
        self._open = {"registry": registry, "device": device, "search_params": search_params}
        self.searcher = Searcher(folder, registry, device=device, search_params=search_params)

    @classmethod
    def build(cls, corpus: str | Path | Sequence[str], *, ids: Sequence[str] | None = None,
              titles: Sequence[str] | None = None, name: str | None = None, model: str | None = None,
              index_type: str = "auto", index_dir: str | Path | None = None, overwrite: bool = False,
              encoding: EncodingOptions | None = None, registry: Registry | None = None,
              id_field: str | None = None, text_field: str | None = None, title_field: str | None = None,
              metadata_fields: Sequence[str] | None = None, metadata: Sequence[dict] | None = None) -> Index:
        """Build from a corpus path (any format `arr index` reads) or from a list of texts, with
        optional ids (default "0", "1", …) and titles; then open it. `id_field`, `text_field` and
        `title_field` name a corpus file's fields (`arr index --id-field …`; BEIR's by default);
        `metadata_fields` are stored with each document for `where=` filters (texts given in Python
        take `metadata=`, one dict per text)."""
        store = IndexStore(Path(index_dir) if index_dir else None)
        registry = registry or Registry()
        named = {"id": id_field, "text": text_field, "title": title_field}
        if any(value is not None for value in named.values()):
            if not isinstance(corpus, (str, Path)):
                raise ArrError("id_field, text_field and title_field name a corpus file's fields; texts given in "
                               "Python take ids= and titles=")
            encoding = encoding or EncodingOptions()
            given = {role: value for role, value in named.items() if value is not None}
            encoding = replace(encoding, fields=replace(encoding.fields, **given))
        if metadata is not None:
            if isinstance(corpus, (str, Path)):
                raise ArrError("metadata= goes with texts given in Python; a corpus file names metadata_fields=")
            metadata_fields = sorted({key for row in metadata for key in row})
        if metadata_fields:
            encoding = replace(encoding or EncodingOptions(), metadata_fields=tuple(metadata_fields))
        if isinstance(corpus, (str, Path)):
            manifest = build_index(Path(corpus), name=name, model=model, spec=IndexSpec(index_type), encoding=encoding,
                                   store=store, registry=registry, overwrite=overwrite)
        else:
            if name is None:
                raise ArrError("name the index built from texts (name=...)")
            with tempfile.TemporaryDirectory() as scratch:
                path = _write_texts(Path(scratch) / f"{name}.jsonl", corpus, ids, titles, metadata)
                manifest = build_index(path, name=name, model=model, spec=IndexSpec(index_type), encoding=encoding,
                                       store=store, registry=registry, overwrite=overwrite,
                                       corpus_label="texts given in Python")
        return cls(manifest.name, index_dir=store.root, registry=registry)

    @property
    def manifest(self) -> IndexManifest:
        return self.searcher.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def __len__(self) -> int:
        """Documents (chunks, in a chunked index) a search can return: deleted ones do not count."""
        return self.searcher.live_count

    def add(self, corpus: str | Path | Sequence[str], *, ids: Sequence[str] | None = None,
            titles: Sequence[str] | None = None, encoding: EncodingOptions | None = None,
            metadata: Sequence[dict] | None = None) -> Index:
        """Encode and append documents (a corpus path or texts with ids), as `arr index --add`
        does: all of them or, after a failure, none. An id already in the index is refused."""
        return self._write(corpus, ids, titles, encoding, metadata, upsert=False)

    def upsert(self, corpus: str | Path | Sequence[str], *, ids: Sequence[str] | None = None,
               titles: Sequence[str] | None = None, encoding: EncodingOptions | None = None,
               metadata: Sequence[dict] | None = None) -> Index:
        """`add`, where a document whose id is in the index replaces it (in the same commit)."""
        return self._write(corpus, ids, titles, encoding, metadata, upsert=True)

    def delete(self, ids: str | Sequence[str], *, missing_ok: bool = False) -> Index:
        """Remove documents by id (every chunk of each) in one commit; an unknown id is refused
        (nothing changes) unless `missing_ok`."""
        from .index.builder import delete_from_index

        delete_from_index([ids] if isinstance(ids, str) else ids, name=self.searcher.folder, missing_ok=missing_ok)
        return self._reopen()

    def _write(self, corpus, ids, titles, encoding, metadata, upsert: bool) -> Index:
        from .index.builder import add_to_index

        registry = self._open["registry"] or Registry()
        if metadata:  # stored under the index's own fields and these rows' ones
            known = set(self.manifest.encoder.get("metadata_fields") or ())
            fields = sorted(known | {key for row in metadata if isinstance(row, dict) for key in row})
            encoding = replace(encoding or EncodingOptions(), metadata_fields=tuple(fields))
        loaded = self.searcher._embedder  # the model already loaded encodes the new rows
        if isinstance(corpus, (str, Path)):
            if ids is not None or titles is not None or metadata is not None:
                raise ArrError("ids=, titles= and metadata= go with texts given in Python; a corpus file has its own")
            add_to_index(Path(corpus), name=self.searcher.folder, encoding=encoding, registry=registry, upsert=upsert,
                         embedder=loaded)
        else:
            if ids is None:
                raise ArrError("texts added to an index need their ids (ids=...): the default 0, 1, … would repeat")
            with tempfile.TemporaryDirectory() as scratch:
                path = _write_texts(Path(scratch) / "texts.jsonl", corpus, ids, titles, metadata)
                add_to_index(path, name=self.searcher.folder, encoding=encoding, registry=registry, upsert=upsert,
                             corpus_label="texts given in Python", embedder=loaded)
        return self._reopen()

    def _reopen(self) -> Index:
        """The new generation, with the model already loaded."""
        loaded = self.searcher._embedder
        self.searcher = Searcher(self.searcher.folder, self._open["registry"], device=self._open["device"],
                                 search_params=self._open["search_params"])
        if loaded is not None:
            self.searcher.embedder = loaded
        return self

    def get(self, doc_id: str) -> Document | None:
        """The stored document (a chunk, in a chunked index: `parent` names its document) with this
        id, or None."""
        return self.searcher.document(str(doc_id))

    def search(self, query: str, k: int = 10, *, mode: str | None = None, collapse: bool | None = None,
               nprobe: int | None = None, ef_search: int | None = None, rerank_factor: int | None = None,
               where: dict | None = None, explain: bool = False, rerank: str | None = None,
               rerank_depth: int | None = None) -> list[Hit]:
        """The top-k hits of one query, best first; the options are `arr search`'s (`SearchOptions`);
        `where` keeps rows whose metadata match (`index/filters.py`)."""
        if not isinstance(query, str):
            raise ArrError("search takes one query string; use search_many for a list")
        return self.search_many([query], k, mode=mode, collapse=collapse, nprobe=nprobe, ef_search=ef_search,
                                rerank_factor=rerank_factor, where=where, explain=explain, rerank=rerank,
                                rerank_depth=rerank_depth)[0]

    def search_many(self, queries: Sequence[str], k: int = 10, *, mode: str | None = None, collapse: bool | None = None,
                    nprobe: int | None = None, ef_search: int | None = None,
                    rerank_factor: int | None = None, where: dict | None = None, explain: bool = False,
                    rerank: str | None = None, rerank_depth: int | None = None) -> list[list[Hit]]:
        """The top-k hits of each query, encoded in batches: what `arr search --queries` and the server answer."""
        if isinstance(queries, str):
            raise ArrError("search_many takes a list of query strings; use search for one")
        return self.searcher.search(list(queries), k, collapse, mode, nprobe=nprobe, ef_search=ef_search,
                                    rerank_factor=rerank_factor, where=where, explain=explain, rerank=rerank,
                                    rerank_depth=rerank_depth)


def _write_texts(path: Path, texts: Sequence[str], ids: Sequence[str] | None, titles: Sequence[str] | None,
                 metadata: Sequence[dict] | None = None) -> Path:
    texts = list(texts)
    if not texts:
        raise ArrError("no texts to index")
    if not all(isinstance(t, str) for t in texts):
        raise ArrError("texts must be strings")
    ids = [str(i) for i in range(len(texts))] if ids is None else [str(i) for i in ids]
    titles = [""] * len(texts) if titles is None else list(titles)
    if len(ids) != len(texts) or len(titles) != len(texts):
        raise ArrError(f"{len(texts)} texts but {len(ids)} ids and {len(titles)} titles")
    metadata = [{}] * len(texts) if metadata is None else list(metadata)
    if len(metadata) != len(texts) or not all(isinstance(m, dict) for m in metadata):
        raise ArrError(f"metadata= needs one dict per text ({len(texts)} texts, {len(metadata)} given)")
    reserved = {"_id", "title", "text"} & {key for m in metadata for key in m}
    if reserved:
        raise ArrError(f"metadata fields may not be named {', '.join(sorted(reserved))}")
    with open(path, "w", encoding="utf-8") as handle:
        for doc_id, title, text, meta in zip(ids, titles, texts, metadata):
            handle.write(json.dumps({**meta, "_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    return path


# Models loaded by `encode`, most recent last: repeated calls reuse them; the oldest goes beyond this.
_LOADED: OrderedDict[tuple, object] = OrderedDict()
_KEEP_LOADED = 2


def encode(texts: str | Sequence[str], model: str | None = None, role: str = "document", *, batch_size: int = 32,
           normalize_embeddings: bool | None = None, convert_to_tensor: bool = False, show_progress_bar: bool = False,
           device: str = "auto", dtype: str | None = None, registry: Registry | None = None):
    """Vectors of `texts` with a registry model (default: the registry's default) in a role:
    `query`, `document` or `symmetric`. As sentence-transformers' `encode`: (N, dim) float32 for a
    list, (dim,) for one string, a tensor with `convert_to_tensor`; see `Embedder.encode`. The model
    is loaded once and kept for later calls (the two most recently used)."""
    from .encoding import load_embedder

    entry = (registry or Registry()).resolve(model)
    key = (entry.fingerprint, device, dtype)
    embedder = _LOADED.pop(key, None) or load_embedder(entry, device=device, dtype=dtype)
    _LOADED[key] = embedder
    while len(_LOADED) > _KEEP_LOADED:
        _LOADED.popitem(last=False)
    return embedder.encode(texts, role=role, batch_size=batch_size, normalize_embeddings=normalize_embeddings,
                           convert_to_tensor=convert_to_tensor, show_progress_bar=show_progress_bar)
