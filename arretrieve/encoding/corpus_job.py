"""Sharded, resumable corpus encoding, cached under the toolkit home.

Documents are cut into shards of `shard_size` in corpus order; each shard's vectors are written to
`shard-NNNNN.npy` atomically (temporary file, then rename), then its sha256 beside it
(`shard-NNNNN.sha256`), so after Ctrl-C, kill -9 or an out-of-memory kill, re-running the same
command encodes only the missing shards; a shard whose content no longer matches its hash (edited,
damaged) is encoded again, never reused. Memory stays
bounded by one shard's texts and vectors whatever the corpus size. With several devices, one
process per device encodes every n-th shard.

A job's folder is named by everything that decides its vectors (model fingerprint, corpus
fingerprint, dtype, shard size) and is kept when done: rebuilding an index with another index
type, or evaluating the same corpus with `arr beir-eval`, reuses the vectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import traceback
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..corpus import Chunking, CorpusSource, Document, FieldNames
from ..errors import ArrError
from ..hashing import sha256_file
from ..home import encoding_cache_dir, write_atomic, write_json_atomic
from ..registry import ModelEntry

log = logging.getLogger(__name__)

JOB_FILE = "job.json"


@dataclass(frozen=True)
class EncodeJobSpec:
    """Everything that must match for a stopped job to be resumed rather than restarted."""

    model_fingerprint: str
    corpus_fingerprint: str
    dtype: str
    shard_size: int
    count: int


def shard_batches(documents: Iterator[Document], shard_size: int) -> Iterator[list[Document]]:
    while batch := list(islice(documents, shard_size)):
        yield batch


class EncodeJob:
    def __init__(self, spec: EncodeJobSpec, root: Path | None = None):
        self.spec = spec
        key = f"{spec.model_fingerprint}-{spec.corpus_fingerprint[:16]}-{spec.dtype}-{spec.shard_size}"
        self.work_dir = (root or encoding_cache_dir()) / key
        self.shards = -(-spec.count // spec.shard_size)

    def prepare(self) -> None:
        """Start a job, or check that the folder holds the same job (a stopped or finished one)."""
        path = self.work_dir / JOB_FILE
        if path.is_file():
            try:
                previous = EncodeJobSpec(**json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError):
                raise ArrError(f"{path} is corrupted; delete {self.work_dir} to start over") from None
            if previous != self.spec:
                raise ArrError(f"{self.work_dir} holds another encoding job; delete that folder to start over")
        else:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, asdict(self.spec))
        self._drop_altered_shards()

    def shard_path(self, number: int) -> Path:
        return self.work_dir / f"shard-{number:05d}.npy"

    def _hash_path(self, number: int) -> Path:
        return self.shard_path(number).with_suffix(".sha256")

    def _is_done(self, number: int) -> bool:
        return self.shard_path(number).is_file() and self._hash_path(number).is_file()

    def pending(self) -> list[int]:
        return [n for n in range(self.shards) if not self._is_done(n)]

    def _drop_altered_shards(self) -> None:
        """A reused shard must be the bytes that were written: any other is encoded again."""
        for number in range(self.shards):
            if not self._is_done(number):
                continue
            try:
                intact = sha256_file(self.shard_path(number)) == self._hash_path(number).read_text().strip()
            except (OSError, UnicodeDecodeError):
                intact = False
            if not intact:
                log.warning("%s is not what was written there (its sha256 differs); encoding it again",
                            self.shard_path(number))
                self._hash_path(number).unlink(missing_ok=True)

    def done_documents(self) -> int:
        return sum(
            min(self.spec.shard_size, self.spec.count - n * self.spec.shard_size)
            for n in range(self.shards)
            if self._is_done(n)
        )

    def encode(
        self,
        source: CorpusSource,
        embedder,
        batch_size: int,
        only: set[int] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Encode the pending shards (of `only`, when given), streaming the corpus once."""
        for number, texts in self.pending_texts(source, only):
            self.save_shard(number, embedder.encode(texts, role="document", batch_size=batch_size, on_progress=on_progress))

    def pending_texts(self, source: CorpusSource, only: set[int] | None = None) -> Iterator[tuple[int, list[str]]]:
        """(shard number, its texts) for each pending shard (of `only`, when given), streaming the corpus once."""
        todo = set(self.pending()) if only is None else set(self.pending()) & only
        for number, batch in enumerate(shard_batches(source.documents(), self.spec.shard_size)):
            if number in todo:
                yield number, [d.full_text for d in batch]

    def save_shard(self, number: int, vectors: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, vectors)
        write_atomic(self.shard_path(number), lambda handle: handle.write(buffer.getbuffer()), binary=True)
        # Written second: a shard without its hash (a kill between the two) counts as not done.
        write_atomic(self._hash_path(number), lambda handle: handle.write(hashlib.sha256(buffer.getbuffer()).hexdigest()))

    def load_shard(self, number: int) -> np.ndarray:
        try:
            vectors = np.load(self.shard_path(number))
        except (OSError, ValueError):
            raise ArrError(f"{self.shard_path(number)} is corrupted; delete it and re-run to encode it again") from None
        expected = min(self.spec.shard_size, self.spec.count - number * self.spec.shard_size)
        if vectors.shape[0] != expected:
            raise ArrError(f"{self.shard_path(number)} holds {vectors.shape[0]} vectors, expected {expected}; delete it and re-run")
        return vectors

    def iter_vectors(self) -> Iterator[np.ndarray]:
        for number in range(self.shards):
            yield self.load_shard(number)


def _worker(rank: int, devices: list[str], entry_payload: dict, dtype: str, work_dir: str, spec: dict,
            source_args: dict, batch_size: int) -> None:
    """One encoding process per device: shards number % len(devices) == rank."""
    try:
        from . import load_embedder

        job = EncodeJob(EncodeJobSpec(**spec), Path(work_dir).parent)
        embedder = load_embedder(ModelEntry.from_dict(entry_payload), device=devices[rank], dtype=dtype)
        mine = {n for n in range(job.shards) if n % len(devices) == rank}
        job.encode(CorpusSource(**source_args), embedder, batch_size, only=mine)
    except BaseException as exc:  # reported to the parent, which turns it into one line
        (Path(work_dir) / f"worker-{rank}.error").write_text(
            f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", encoding="utf-8"
        )
        raise SystemExit(1) from None


def encode_on_devices(job: EncodeJob, source: CorpusSource, entry: ModelEntry, dtype: str, devices: list[str],
                      batch_size: int) -> None:
    """Encode the pending shards with one process per device, then check every worker finished."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    source_args = {"path": source.path, "fields": source.fields, "skip_invalid": source.skip_invalid,
                   "chunking": source.chunking}
    entry_payload = entry.to_dict()
    processes = [
        context.Process(target=_worker, args=(rank, devices, entry_payload, dtype, str(job.work_dir),
                                              asdict(job.spec), source_args, batch_size))
        for rank in range(len(devices))
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failures = []
    for rank, process in enumerate(processes):
        error_file = job.work_dir / f"worker-{rank}.error"
        if process.exitcode != 0:
            detail = error_file.read_text(encoding="utf-8").splitlines()[0] if error_file.is_file() else f"exit code {process.exitcode}"
            failures.append(f"{devices[rank]}: {detail}")
        error_file.unlink(missing_ok=True)
    if failures:
        raise ArrError("encoding worker failed (finished shards are kept; re-run to resume): " + "; ".join(failures))


@dataclass
class EncodingOptions:
    """How a corpus is read and encoded (the same for a fresh index, `--add` and `arr beir-eval`)."""

    fields: FieldNames = field(default_factory=FieldNames)
    skip_invalid: bool = False
    chunking: Chunking | None = None
    # Row fields stored with each document for `where=` filters (not encoded).
    metadata_fields: tuple[str, ...] = ()
    batch_size: int = 16
    device: str = "auto"
    devices: list[str] | None = None
    # A Ray cluster to encode on ("local", "auto" or an address; encoding/ray_job.py) and its actors.
    ray: str | None = None
    workers: int | None = None
    dtype: str | None = None
    shard_size: int = 4096
    show_progress: bool = False


def encode_corpus(source: CorpusSource, entry, options: EncodingOptions, embedder=None) -> EncodeJob:
    """Encode every document into cached shards, resuming (or reusing) a job with the same settings.
    `embedder`: a model of this entry already loaded (a server's), used instead of loading another."""
    from ..runtime import dtype_name, progress_bar, resolve_device, resolve_dtype
    from . import load_embedder

    if options.ray and options.devices:
        raise ArrError("--ray places the workers on the cluster's devices; give --ray or --devices, not both")
    if options.workers is not None and not options.ray:
        raise ArrError("--workers sets the Ray actors of --ray; without --ray one process encodes (--devices for several)")
    if options.workers is not None and options.workers < 1:
        raise ArrError("--workers must be at least 1")
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
    if options.ray:
        from .ray_job import encode_with_ray

        def encode(on_progress=None) -> None:
            encode_with_ray(job, job.pending_texts(source), entry, dtype, options.ray, options.workers,
                            options.batch_size, on_progress)
    else:
        if embedder is None or embedder.entry.fingerprint != entry.fingerprint or dtype_name(embedder.dtype) != dtype:
            embedder = load_embedder(entry, device=devices[0], dtype=dtype)

        def encode(on_progress=None) -> None:
            job.encode(source, embedder, options.batch_size, on_progress=on_progress)
    if not options.show_progress:
        encode()
        return job
    with progress_bar() as progress:
        if not options.ray:
            task = progress.add_task("encoding", total=spec.count, completed=done)
            encode(lambda n: progress.update(task, advance=n))
            return job
        finished = [job.shards - len(job.pending())]

        def shard_done(count: int) -> None:  # Ray reports whole shards
            finished[0] += 1
            progress.update(task, advance=count, description=f"encoding on Ray, shard {finished[0]}/{job.shards}")

        task = progress.add_task(f"encoding on Ray, shard {finished[0]}/{job.shards}", total=spec.count, completed=done)
        encode(shard_done)
    return job
