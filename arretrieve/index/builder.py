"""`arr index`: validate a corpus, encode it in resumable cached shards, build the FAISS index,
and `--add` new documents to an existing index.

An index folder is committed by its manifest: data files carry a generation number, and a new
manifest (written atomically, last) is what switches readers to them, so an interrupted `--add`
leaves the previous index intact.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..corpus import Chunking, CorpusSource, FieldNames
from ..errors import ArrError
from ..registry import Registry
from .docstore import DOCS_FILE, DocStore, append_documents
from .encode_job import EncodeJob, EncodeJobSpec, encode_on_devices
from .faiss_index import TRAINED_TYPES, check_build_options, check_index_type, create_index, faiss_module, plan_index, training_sample
from .lexical import build_bm25, save_bm25
from .manifest import IndexManifest
from .store import IndexStore

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.f32"


@dataclass
class BuildOptions:
    """How to read the corpus and encode it (shared by a fresh build and `--add`)."""

    fields: FieldNames = field(default_factory=FieldNames)
    skip_invalid: bool = False
    chunking: Chunking | None = None
    batch_size: int = 16
    device: str = "auto"
    devices: list[str] | None = None
    dtype: str | None = None
    shard_size: int = 4096
    show_progress: bool = False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def encode_corpus(source: CorpusSource, entry, options: BuildOptions) -> EncodeJob:
    """Encode every document into cached shards, resuming (or reusing) a job with the same settings."""
    from ..encoding import load_embedder
    from ..encoding.device import dtype_name, resolve_device, resolve_dtype

    scan = source.scan()
    if scan.skipped:
        log.warning("%s", scan.summary())
    devices = options.devices or [options.device]
    dtype = dtype_name(resolve_dtype(options.dtype or entry.dtype, resolve_device(devices[0])))
    spec = EncodeJobSpec(entry.fingerprint, source.fingerprint(), dtype, options.shard_size, scan.chunks)
    job = EncodeJob(spec)
    job.prepare()
    done = job.done_documents()
    if done:
        state = "all" if done == spec.count else f"{done} of"
        log.info("reusing encoded vectors: %s %d texts already encoded in %s", state, spec.count, job.work_dir)
    if not job.pending():
        return job
    if len(devices) > 1:
        encode_on_devices(job, source, entry, dtype, devices, options.batch_size)
        return job
    embedder = load_embedder(entry, device=devices[0], dtype=dtype)
    if not options.show_progress:
        job.encode(source, embedder, options.batch_size)
        return job
    from ..encoding.embedder import progress_bar

    with progress_bar() as progress:
        task = progress.add_task("encoding", total=spec.count, completed=done)
        job.encode(source, embedder, options.batch_size, on_progress=lambda n: progress.update(task, advance=n))
    return job


def _append_vectors(path: Path, vectors: np.ndarray) -> None:
    """IVF-PQ keeps full vectors on disk (raw float32 rows) for exact re-ranking of its candidates."""
    with open(path, "ab") as handle:
        handle.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())


def _corpus_record(corpus: Path, source: CorpusSource, job: EncodeJob, label: str | None = None) -> dict:
    scan = source.scan()
    return {"path": label or str(Path(corpus).resolve()), "fingerprint": job.spec.corpus_fingerprint,
            "documents": scan.documents, "skipped": sum(scan.skipped.values())}


def model_for_index(manifest: IndexManifest, registry: Registry):
    """The registry entry that built an index, refused if it is gone or its fingerprint changed."""
    if manifest.model not in registry.names():
        raise ArrError(f"index {manifest.name!r} was built with model {manifest.model!r}, which is no longer in the "
                       "registry; restore that entry (`arr models add`) or rebuild the index with another model")
    entry = registry.get(manifest.model)
    if entry.fingerprint != manifest.model_fingerprint:
        raise ArrError(
            f"index {manifest.name!r} was built with model {entry.name!r} at fingerprint {manifest.model_fingerprint}, "
            f"but that registry entry now has fingerprint {entry.fingerprint}: its vectors would not match new ones. "
            f"Rebuild the index (`arr index --overwrite`) or restore the model entry"
        )
    return entry


def _write_bm25(folder: Path, texts, generation: int) -> str:
    """BM25 over the rows' title and text, in the folder's `bm25-<generation>/`; returns its name."""
    name = f"bm25-{generation}"
    save_bm25(build_bm25(list(texts)), folder / name)
    return name


def _encoder_record(entry, dtype: str, options: BuildOptions) -> dict:
    return {
        "prompts": dict(entry.prompts),
        "num_compress_tokens": entry.num_compress_tokens,
        "pooling": entry.pooling,
        "max_length": entry.max_length,
        "dtype": dtype,
        "batch_size": options.batch_size,
        "chunking": None if options.chunking is None else {"words": options.chunking.words, "overlap": options.chunking.overlap},
        "fields": vars(options.fields),
    }


def build_index(
    corpus: Path,
    *,
    name: str | None = None,
    model: str | None = None,
    index_type: str = "auto",
    memory_budget: int | None = None,
    seed: int = 0,
    hnsw_m: int | None = None,
    ef_construction: int | None = None,
    reduced_dim: int | None = None,
    options: BuildOptions | None = None,
    store: IndexStore | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
    corpus_label: str | None = None,
    bm25: bool = True,
) -> IndexManifest:
    """Build `indexes/<name>/` from a corpus; re-running after an interruption resumes the encoding.
    `corpus_label` is recorded instead of the corpus path (for a temporary file of texts); `bm25`
    adds the lexical side that `--mode bm25|hybrid` searches."""
    options = options or BuildOptions()
    store, registry = store or IndexStore(), registry or Registry()
    check_index_type(index_type)  # before hours of encoding, not after
    if index_type != "auto":  # likewise build options given to a type they do not shape
        check_build_options(index_type, hnsw_m, ef_construction, reduced_dim)
    corpus = Path(corpus)
    name = name or (corpus.resolve().name if corpus.is_dir() else corpus.name.split(".")[0]).lower()
    folder = store.path(name)
    if folder.exists() and not overwrite:
        raise ArrError(f"index {name!r} already exists in {store.root}; pass --overwrite to rebuild it or --add to extend it")
    source = CorpusSource(corpus, options.fields, options.skip_invalid, options.chunking)
    entry = registry.resolve(model)
    job = encode_corpus(source, entry, options)

    faiss = faiss_module()
    dim = job.load_shard(0).shape[1]
    params = plan_index(index_type, job.spec.count, dim, memory_budget, seed, hnsw_m, ef_construction, reduced_dim)
    sample = None
    if params.type in TRAINED_TYPES:
        sample = training_sample(job.iter_vectors(), job.spec.count, params.train_size, seed)
    index = create_index(params, dim, sample)
    store.root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=store.root))
    try:
        vectors_file = staging / VECTORS_FILE if params.type == "ivf-pq" else None
        for vectors in job.iter_vectors():
            index.add(vectors)
            if vectors_file:
                _append_vectors(vectors_file, vectors)
        faiss.write_index(index, str(staging / "index-0.faiss"))
        offsets, docs_bytes = append_documents(staging / DOCS_FILE, source.documents())
        np.save(staging / "offsets-0.npy", offsets)
        bm25_name = _write_bm25(staging, (d.full_text for d in source.documents()), 0) if bm25 else None
        manifest = IndexManifest(
            name=name,
            model=entry.name,
            model_fingerprint=entry.fingerprint,
            encoder=_encoder_record(entry, job.spec.dtype, options),
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
                   "bm25": bm25_name},
            docs_bytes=docs_bytes,
        )
        manifest.save(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def add_to_index(
    corpus: Path,
    *,
    name: str | None = None,
    options: BuildOptions | None = None,
    store: IndexStore | None = None,
    registry: Registry | None = None,
) -> IndexManifest:
    """Encode new documents with the index's own model and append them (no id may repeat)."""
    options = options or BuildOptions()
    store, registry = store or IndexStore(), registry or Registry()
    folder = store.resolve(name)
    manifest = IndexManifest.load(folder)
    entry = model_for_index(manifest, registry)
    chunking = manifest.encoder.get("chunking")
    source = CorpusSource(Path(corpus), options.fields, options.skip_invalid, Chunking(**chunking) if chunking else None)
    options = replace(options, dtype=manifest.encoder["dtype"])  # new vectors must match the old ones
    docstore = DocStore(folder, manifest.files["offsets"], manifest.count)
    existing = {parent for _, parent in docstore.iter_ids()}
    clashes = [d.doc_id for d in source.documents() if d.doc_id in existing]
    if clashes:
        raise ArrError(f"{len(clashes)} documents of {corpus} are already in index {manifest.name!r} (e.g. {clashes[0]!r})")
    job = encode_corpus(source, entry, options)

    faiss = faiss_module()
    index = faiss.read_index(str(folder / manifest.files["index"]))
    vectors_path = folder / manifest.files["vectors"] if manifest.files.get("vectors") else None
    if vectors_path:
        with open(vectors_path, "r+b") as handle:  # drop what an interrupted --add appended
            handle.truncate(manifest.count * manifest.dim * 4)
    for vectors in job.iter_vectors():
        index.add(vectors)
        if vectors_path:
            _append_vectors(vectors_path, vectors)
    generation = manifest.generation + 1
    new_offsets, docs_bytes = append_documents(folder / DOCS_FILE, source.documents(), keep_bytes=manifest.docs_bytes)
    faiss.write_index(index, str(folder / f"index-{generation}.faiss"))
    np.save(folder / f"offsets-{generation}.npy", np.concatenate([np.asarray(docstore.offsets), new_offsets]))
    old_files = dict(manifest.files)
    manifest.files = {**old_files, "index": f"index-{generation}.faiss", "offsets": f"offsets-{generation}.npy"}
    if old_files.get("bm25"):  # bm25s cannot extend an index: the lexical side is rebuilt over every row
        texts = [d.full_text for d in docstore.get(range(manifest.count))] + [d.full_text for d in source.documents()]
        manifest.files["bm25"] = _write_bm25(folder, texts, generation)
    manifest.generation = generation
    manifest.count += job.spec.count
    manifest.docs_bytes = docs_bytes
    manifest.corpus.append({**_corpus_record(corpus, source, job), "added": _now()})
    manifest.save(folder)  # the commit point
    for key in ("index", "offsets"):
        (folder / old_files[key]).unlink(missing_ok=True)
    if old_files.get("bm25"):
        shutil.rmtree(folder / old_files["bm25"], ignore_errors=True)
    return manifest
