"""`arr index`: validate a corpus, encode it in resumable cached shards, build the FAISS index,
and `--add` new documents to an existing index.

An index folder is committed by its manifest: data files carry a generation number, and a new
manifest (written atomically, last) is what switches readers to them, so an interrupted `--add`
leaves the previous index intact.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .. import __version__
from ..corpus import Chunking, CorpusSource, Document
from ..encoding.corpus_job import EncodeJob, EncodingOptions, encode_corpus
from ..errors import ArrError
from ..home import disk_writes, save_npy_atomic, write_folder_atomic
from ..registry import Registry
from .docstore import DOCS_FILE, DocStore, append_documents
from .faiss_index import (TRAINED_TYPES, IndexSpec, create_index, faiss_module, plan_index, training_sample,
                          write_faiss_index)
from .lexical import BM25_SETTINGS, bm25_stemmer, build_bm25, save_bm25
from .manifest import MANIFEST_FILE, IndexManifest, model_for_index
from .ondisk import block_rows, build_on_disk, build_workers, trained_of
from .store import IndexStore


VECTORS_FILE = "vectors.f32"


def _roll_back(folder: Path, committed: IndexManifest, vectors_path: Path | None, new_files) -> None:
    """Undo an --add that did not commit: its new-generation files go and the appended tails are cut,
    so the folder is byte for byte what the committed manifest describes."""
    if IndexManifest.load(folder).generation != committed.generation:  # interrupted just after the commit
        return
    for new in new_files:
        path = folder / new
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    for path, size in ((folder / DOCS_FILE, committed.docs_bytes), (vectors_path, committed.count * committed.dim * 4)):
        if path is not None and path.is_file() and path.stat().st_size > size:
            with open(path, "r+b") as handle:
                handle.truncate(size)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _appending(shards: Iterable[np.ndarray], path: Path | None) -> Iterator[np.ndarray]:
    """The shards' vectors, each also appended to `path` if given: IVF-PQ keeps full vectors on disk
    (raw float32 rows) for exact re-ranking of its candidates."""
    for vectors in shards:
        if path is not None:
            with open(path, "ab") as handle:
                handle.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        yield vectors


def _add_on_disk(trained: bytes, vectors: Iterable[np.ndarray], index_path: Path, lists_path: Path, params: dict,
                 index_type: str, dim: int, first_id: int = 0, earlier: tuple[Path, Path] | None = None) -> None:
    workers = build_workers()
    rows = block_rows(params["memory_budget"], index_type, dim, params["pq_m"], workers)
    build_on_disk(trained, vectors, index_path, lists_path, rows_per_block=rows, workers=workers, first_id=first_id,
                  earlier=earlier)


def _corpus_record(corpus: Path, source: CorpusSource, job: EncodeJob, label: str | None = None) -> dict:
    scan = source.scan()
    return {"path": label or str(Path(corpus).resolve()), "fingerprint": job.spec.corpus_fingerprint,
            "documents": scan.documents, "skipped": sum(scan.skipped.values())}


def _write_bm25(folder: Path, texts: list[str], generation: int, stemmer: str | None = BM25_SETTINGS["stemmer"]) -> str:
    """BM25 over the rows' title and text, in the folder's `bm25-<generation>/`; returns its name."""
    name = f"bm25-{generation}"
    save_bm25(build_bm25(texts, stemmer), folder / name)
    return name


def _keeping_texts(documents: Iterable[Document], texts: list[str] | None) -> Iterator[Document]:
    """The documents, each one's full text also appended to `texts` (unless None): the docstore and
    the BM25 side come from one read of the corpus."""
    for document in documents:
        if texts is not None:
            texts.append(document.full_text)
        yield document


def _encoder_record(entry, dtype: str, encoding: EncodingOptions) -> dict:
    return {
        "prompts": dict(entry.prompts),
        "num_compress_tokens": entry.num_compress_tokens,
        "pooling": entry.pooling,
        "max_length": entry.max_length,
        "dtype": dtype,
        "batch_size": encoding.batch_size,
        "chunking": None if encoding.chunking is None else {"words": encoding.chunking.words, "overlap": encoding.chunking.overlap},
        "fields": vars(encoding.fields),
        "metadata_fields": list(encoding.metadata_fields),
    }


def build_index(
    corpus: Path,
    *,
    name: str | None = None,
    model: str | None = None,
    spec: IndexSpec | None = None,
    encoding: EncodingOptions | None = None,
    store: IndexStore | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
    corpus_label: str | None = None,
    bm25: bool = True,
) -> IndexManifest:
    """Build `indexes/<name>/` from a corpus; re-running after an interruption resumes the encoding.
    `corpus_label` is recorded instead of the corpus path (for a temporary file of texts); `bm25`
    adds the lexical side that `--mode bm25|hybrid` searches."""
    spec, encoding = spec or IndexSpec(), encoding or EncodingOptions()
    store, registry = store or IndexStore(), registry or Registry()
    spec.check()  # before hours of encoding, not after
    corpus = Path(corpus)
    name = name or (corpus.resolve().name if corpus.is_dir() else corpus.name.split(".")[0]).lower()
    with store.writing(name):
        return _build(corpus, name, store.path(name), spec, encoding, registry.resolve(model), overwrite, corpus_label,
                      bm25, store)


def _build(corpus: Path, name: str, folder: Path, spec: IndexSpec, encoding: EncodingOptions, entry, overwrite: bool,
           corpus_label: str | None, bm25: bool, store: IndexStore) -> IndexManifest:
    if folder.exists() and not overwrite:
        raise ArrError(f"index {name!r} already exists in {store.root}; pass --overwrite to rebuild it or --add to extend it")
    source = CorpusSource(corpus, encoding.fields, encoding.skip_invalid, encoding.chunking, encoding.metadata_fields)
    job = encode_corpus(source, entry, encoding)

    dim = job.load_shard(0).shape[1]
    params = plan_index(spec, job.spec.count, dim)
    sample = None
    if params.type in TRAINED_TYPES:
        sample = training_sample(job.iter_vectors(), job.spec.count, params.train_size, spec.seed)
    index = create_index(params, dim, sample)
    built: list[IndexManifest] = []

    def write(staging: Path) -> None:
        vectors_file = staging / VECTORS_FILE if params.type == "ivf-pq" else None
        vectors = _appending(job.iter_vectors(), vectors_file)
        if params.on_disk:
            _add_on_disk(faiss_module().serialize_index(index), vectors, staging / "index-0.faiss",
                         staging / "lists-0.ivfdata", params.to_dict(), params.type, dim)
        else:
            for shard in vectors:
                index.add(shard)
            write_faiss_index(index, staging / "index-0.faiss")
        texts = [] if bm25 else None
        offsets, docs_bytes = append_documents(staging / DOCS_FILE, _keeping_texts(source.documents(), texts))
        np.save(staging / "offsets-0.npy", offsets)
        bm25_name = _write_bm25(staging, texts, 0) if bm25 else None
        built.append(IndexManifest(
            name=name,
            model=entry.name,
            model_fingerprint=entry.fingerprint,
            encoder=_encoder_record(entry, job.spec.dtype, encoding),
            dim=dim,
            metric="inner_product",
            count=job.spec.count,
            index_type=params.type,
            index_params=params.to_dict(),
            corpus=[_corpus_record(corpus, source, job, corpus_label)],
            toolkit_version=__version__,
            created=_now(),
            generation=0,
            files={"index": "index-0.faiss", "offsets": "offsets-0.npy", "vectors": VECTORS_FILE if vectors_file else None,
                   "bm25": bm25_name, "lists": "lists-0.ivfdata" if params.on_disk else None},
            docs_bytes=docs_bytes,
        ))

    # Replaced only once the new index is whole: an interrupted rebuild leaves the old one in place.
    write_folder_atomic(folder, write, MANIFEST_FILE, lambda: asdict(built[0]), existing="replace")
    return built[0]


def add_to_index(
    corpus: Path,
    *,
    name: str | Path | None = None,
    encoding: EncodingOptions | None = None,
    store: IndexStore | None = None,
    registry: Registry | None = None,
    upsert: bool = False,
    corpus_label: str | None = None,
    embedder=None,
) -> IndexManifest:
    """Encode new documents with the index's own model and append them. No id may repeat, unless
    `upsert`: then a document whose id is in the index replaces it, in the same commit."""
    encoding = encoding or EncodingOptions()
    store, registry = store or IndexStore(), registry or Registry()
    folder = _folder(store, name)
    with store.writing(folder.name):
        return _add(Path(corpus), folder, encoding, registry, upsert, corpus_label, embedder)


def _folder(store: IndexStore, name: str | Path | None) -> Path:
    """An index in the store by name, or an index folder given as a Path."""
    if isinstance(name, Path):
        if not (name / MANIFEST_FILE).is_file():
            raise ArrError(f"{name} is not an index folder (no {MANIFEST_FILE})")
        return name
    return store.resolve(name)


def delete_from_index(ids: Iterable[str], *, name: str | Path | None = None, store: IndexStore | None = None,
                      missing_ok: bool = False) -> IndexManifest:
    """Hide documents by id (every chunk of each) from search, get and len, in one commit; their
    rows stay in the files until the index is rebuilt. An id not in the index is refused (nothing
    changes) unless `missing_ok`."""
    store = store or IndexStore()
    folder = _folder(store, name)
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        raise ArrError("no ids to delete")
    with store.writing(folder.name):
        manifest = IndexManifest.load(folder)
        docstore = DocStore(folder, manifest.files["offsets"], manifest.count, manifest.docs_bytes)
        hidden, rows_of = _live_rows(folder, manifest, docstore)
        missing = [i for i in wanted if i not in rows_of]
        if missing and not missing_ok:
            raise ArrError(f"{len(missing)} of the ids to delete are not in index {manifest.name!r} "
                           f"(e.g. {missing[0]!r}); nothing was deleted")
        rows = [r for i in wanted for r in rows_of.get(i, ())]
        if not rows:
            return manifest
        return _commit_deletes(folder, manifest, hidden | set(rows))


def _live_rows(folder: Path, manifest: IndexManifest, docstore: DocStore) -> tuple[set[int], dict[str, list[int]]]:
    """The rows deletes hid, and each live document's rows (all its chunks)."""
    hidden = set(manifest.deleted_rows(folder).tolist())
    rows_of: dict[str, list[int]] = {}
    for row, (_, parent) in enumerate(docstore.iter_ids()):
        if row not in hidden:
            rows_of.setdefault(parent, []).append(row)
    return hidden, rows_of


def _commit_deletes(folder: Path, manifest: IndexManifest, rows: set[int]) -> IndexManifest:
    generation = manifest.generation + 1
    name = f"deleted-{generation}.npy"
    try:
        with disk_writes(folder, f"index {manifest.name!r} is as it was"):
            save_npy_atomic(folder / name, np.array(sorted(rows), dtype=np.int64))
            changed = replace(manifest, files={**manifest.files, "deleted": name}, generation=generation)
            changed.save(folder)  # the commit point
    except BaseException:
        (folder / name).unlink(missing_ok=True)
        raise
    if manifest.files.get("deleted"):
        (folder / manifest.files["deleted"]).unlink(missing_ok=True)
    return changed


def _add(corpus: Path, folder: Path, encoding: EncodingOptions, registry: Registry,
         upsert: bool = False, corpus_label: str | None = None, embedder=None) -> IndexManifest:
    manifest = IndexManifest.load(folder)  # under the lock: a writer before us has committed
    entry = model_for_index(manifest, registry)
    chunking = manifest.encoder.get("chunking")
    # New rows keep the index's metadata fields unless the call names its own.
    metadata_fields = tuple(encoding.metadata_fields) or tuple(manifest.encoder.get("metadata_fields") or ())
    source = CorpusSource(corpus, encoding.fields, encoding.skip_invalid, Chunking(**chunking) if chunking else None,
                          metadata_fields)
    encoding = replace(encoding, dtype=manifest.encoder["dtype"])  # new vectors must match the old ones
    docstore = DocStore(folder, manifest.files["offsets"], manifest.count, manifest.docs_bytes)
    hidden, rows_of = _live_rows(folder, manifest, docstore)
    clashes = list(dict.fromkeys(d.doc_id for d in source.documents() if d.doc_id in rows_of))
    if clashes and not upsert:
        raise ArrError(f"{len(clashes)} documents of {corpus} are already in index {manifest.name!r} (e.g. {clashes[0]!r}); "
                       "upsert replaces them")
    replaced = hidden | {r for doc_id in clashes for r in rows_of[doc_id]}
    job = encode_corpus(source, entry, encoding, embedder)

    vectors_path = folder / manifest.files["vectors"] if manifest.files.get("vectors") else None
    generation = manifest.generation + 1
    old_files = dict(manifest.files)
    new_files = {"index": f"index-{generation}.faiss", "offsets": f"offsets-{generation}.npy"}
    if old_files.get("lists"):  # on disk: the current lists and the new blocks merge into the next file
        new_files["lists"] = f"lists-{generation}.ivfdata"
    if old_files.get("bm25"):
        new_files["bm25"] = f"bm25-{generation}"
    if replaced != hidden:  # the replaced documents' rows are hidden in the same commit as the new ones
        new_files["deleted"] = f"deleted-{generation}.npy"
    try:
        with disk_writes(folder, f"index {manifest.name!r} is as it was ({manifest.count} documents)"):
            if vectors_path:
                with open(vectors_path, "r+b") as handle:  # drop what an interrupted --add appended
                    handle.truncate(manifest.count * manifest.dim * 4)
            vectors = _appending(job.iter_vectors(), vectors_path)
            if "lists" in new_files:
                old_index = folder / old_files["index"]
                _add_on_disk(trained_of(old_index), vectors, folder / new_files["index"], folder / new_files["lists"],
                             manifest.index_params, manifest.index_type, manifest.dim, first_id=manifest.count,
                             earlier=(old_index, folder / old_files["lists"]))
            else:
                index = faiss_module().read_index(str(folder / old_files["index"]))
                for shard in vectors:
                    index.add(shard)
                write_faiss_index(index, folder / new_files["index"])
            # bm25s cannot extend an index: the lexical side is rebuilt over every row, old and new.
            texts = [d.full_text for d in docstore.get(range(manifest.count))] if old_files.get("bm25") else None
            new_offsets, docs_bytes = append_documents(folder / DOCS_FILE, _keeping_texts(source.documents(), texts),
                                                       keep_bytes=manifest.docs_bytes)
            np.save(folder / new_files["offsets"], np.concatenate([np.asarray(docstore.offsets), new_offsets]))
            if texts is not None:
                # The index's own stemming (none, for one built before it): rebuilt otherwise only on request.
                _write_bm25(folder, texts, generation, bm25_stemmer(folder / old_files["bm25"]))
            if "deleted" in new_files:
                save_npy_atomic(folder / new_files["deleted"], np.array(sorted(replaced), dtype=np.int64))
            added = replace(manifest, files={**old_files, **new_files}, generation=generation,
                            count=manifest.count + job.spec.count, docs_bytes=docs_bytes,
                            corpus=[*manifest.corpus, {**_corpus_record(corpus, source, job, corpus_label), "added": _now()}])
            added.save(folder)  # the commit point
    except BaseException:  # what this attempt wrote goes, so that the space comes back; nothing read it
        _roll_back(folder, manifest, vectors_path, new_files.values())
        raise
    for key in ("index", "offsets", "deleted", "lists"):
        if old_files.get(key) and key in new_files:
            (folder / old_files[key]).unlink(missing_ok=True)
    if old_files.get("bm25"):
        shutil.rmtree(folder / old_files["bm25"], ignore_errors=True)
    return added
