"""IVF indexes larger than memory, built the way FAISS documents it (faiss/contrib/ondisk.py and
its demo_ondisk_ivf): the quantizer is trained on a sample as for any IVF index, the vectors are
added in blocks to copies of that trained index (several blocks at a time), each block is written
out as its own lists file, and those inverted lists are merged into one file that a search maps into memory page
by page. No step holds more than one block per worker, so the build's memory is set by the block
size, not by the corpus.

An `--add` merges the index's current lists with the new blocks into the next generation's file:
the committed generation is never written to, as for every other index type.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .faiss_index import bytes_per_vector, faiss_module, write_faiss_index


def block_rows(memory_budget: int, index_type: str, dim: int, pq_m: int, workers: int) -> int:
    """Rows per block so that the blocks in flight (one per worker, each holding its codes and the
    float32 vectors being added) take at most half the budget; the other half is left to the
    encoded shard being read and the training sample."""
    per_row = bytes_per_vector(index_type, dim, pq_m) + 4 * dim
    return max(1, memory_budget // (2 * workers * per_row))


def build_workers() -> int:
    """Blocks added at once: one per core up to four (each block's add then runs on one thread, so
    the cores are not oversubscribed)."""
    return max(1, min(4, os.cpu_count() or 1))


def trained_of(index_path: Path) -> bytes:
    """The trained, empty index behind an on-disk index file (its lists are not read)."""
    faiss = faiss_module()
    index = faiss.read_index(str(index_path), faiss.IO_FLAG_SKIP_IVF_DATA)
    ivf = faiss.extract_index_ivf(index)
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.replace_invlists(empty, True)
    empty.this.disown()  # the index owns it now; Python must not free it
    index.ntotal = ivf.ntotal = 0
    return faiss.serialize_index(index)


def read_on_disk(index_path: Path, lists_path: Path):
    """An on-disk IVF index with its lists mapped read-only from `lists_path`. FAISS records the
    lists file's absolute path at build time (the build's staging folder); the file is looked for
    beside the index instead, so the folder may be renamed or moved."""
    faiss = faiss_module()
    index = faiss.read_index(str(index_path), faiss.IO_FLAG_SKIP_IVF_DATA)
    lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
    if not isinstance(lists, faiss.OnDiskInvertedLists):
        raise ValueError(f"{index_path} has no on-disk inverted lists")
    if not lists_path.is_file():
        raise FileNotFoundError(lists_path)
    lists.filename = str(lists_path)
    lists.read_only = True
    lists.do_mmap()
    return index


@contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """FAISS prints "resizing FILE to N bytes" on the C stdout while it merges; that would land in
    the middle of a command's own (possibly machine-read) output. The C buffer is flushed before
    the descriptor is put back, so nothing printed here leaks out later."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


def _blocks(vectors: Iterable[np.ndarray], rows: int, first_id: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The vectors regrouped into blocks of `rows` (the last one shorter), each with its row ids."""
    pending: list[np.ndarray] = []
    held, next_id = 0, first_id
    for chunk in vectors:
        pending.append(chunk)
        held += len(chunk)
        while held >= rows:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            block, rest = joined[:rows], joined[rows:]
            yield np.ascontiguousarray(block), np.arange(next_id, next_id + rows, dtype=np.int64)
            next_id += rows
            pending, held = ([rest] if len(rest) else []), len(rest)
    if held:
        joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
        yield np.ascontiguousarray(joined), np.arange(next_id, next_id + held, dtype=np.int64)


def _add_block(trained: bytes, vectors: np.ndarray, ids: np.ndarray, threads: int):
    faiss = faiss_module()
    faiss.omp_set_num_threads(threads)  # per calling thread: the blocks in flight share the cores
    block = faiss.deserialize_index(trained)
    block.add_with_ids(vectors, ids)
    return block


def _merged(sources: list, nlist: int, code_size: int, path: Path):
    """One on-disk lists file at `path` holding `sources`' inverted lists, list by list in their
    order (the caller keeps the sources alive until this returns)."""
    faiss = faiss_module()
    lists = faiss.OnDiskInvertedLists(nlist, code_size, str(path))
    pointers = faiss.InvertedListsPtrVector()
    for source in sources:
        pointers.push_back(source)
    with _quiet_c_stdout():
        lists.merge_from_multiple(pointers.data(), pointers.size(), False)
    return lists


def _spill(block, path: Path):
    """A block's inverted lists written to their own file and mapped from there (the block's
    quantizer copy and codes leave memory); the final merge reads only these lists."""
    ivf = faiss_module().extract_index_ivf(block)
    return _merged([ivf.invlists], ivf.nlist, ivf.code_size, path)


def build_on_disk(trained: bytes, vectors: Iterable[np.ndarray], index_path: Path, lists_path: Path, *,
                  rows_per_block: int, workers: int, first_id: int = 0, earlier: tuple[Path, Path] | None = None) -> None:
    """Add `vectors` (row ids from `first_id`) in blocks, then merge the blocks' lists, after those of
    the `earlier` on-disk index (index file, lists file) if given, into `lists_path`, and write the
    index itself (quantizer and list offsets) to `index_path`. Blocks go to a folder beside `index_path`,
    removed at the end: the build needs the index's size twice on disk for a moment."""
    faiss = faiss_module()
    scratch = index_path.parent / f".blocks-{index_path.stem}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    threads = max(1, (os.cpu_count() or 1) // workers)
    spilled: dict[int, object] = {}
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            running: dict = {}  # future -> block number

            def collect(futures) -> None:
                for future in futures:
                    number = running.pop(future)
                    spilled[number] = _spill(future.result(), scratch / f"block-{number}.ivfdata")

            for number, (block, ids) in enumerate(_blocks(vectors, rows_per_block, first_id)):
                if len(running) >= workers:  # at most one block per worker in memory
                    collect(wait(running, return_when=FIRST_COMPLETED).done)
                running[pool.submit(_add_block, trained, block, ids, threads)] = number
            collect(list(running))
        earlier_index = read_on_disk(*earlier) if earlier else None
        sources = ([faiss.extract_index_ivf(earlier_index).invlists] if earlier_index else []) + \
            [spilled[n] for n in sorted(spilled)]
        index = faiss.deserialize_index(trained)
        ivf = faiss.extract_index_ivf(index)
        merged = _merged(sources, ivf.nlist, ivf.code_size, lists_path)
        index.ntotal = ivf.ntotal = merged.compute_ntotal()
        ivf.replace_invlists(merged, True)
        merged.this.disown()
        del sources, earlier_index
        spilled.clear()
        write_faiss_index(index, index_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
