"""Where arretrieve keeps its state: user registry entries, converted base models, caches.

`ARR_HOME` overrides the location; the default follows the XDG data directory convention.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from .errors import ArrError


def arr_home() -> Path:
    explicit = os.environ.get("ARR_HOME")
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "arretrieve"


def base_cache_dir() -> Path:
    return arr_home() / "cache" / "bases"


def encoding_cache_dir() -> Path:
    """Encoded corpora (sharded vectors), shared by `arr index` and `arr beir-eval`."""
    return arr_home() / "cache" / "encodings"


def merged_cache_dir() -> Path:
    """Adapter models merged into their base once, per entry fingerprint and dtype (fast loads)."""
    return arr_home() / "cache" / "merged"


def traced_cache_dir() -> Path:
    """Traced encoders for cold starts, per entry fingerprint, dtype, pooling and torch version."""
    return arr_home() / "cache" / "traced"


def reference_cache_dir() -> Path:
    """Stage-2 reference scores, one file per (model, data, settings)."""
    return arr_home() / "cache" / "reference"


def beir_cache_dir() -> Path:
    """Downloaded BEIR sets and the indexes `arr beir-eval` builds over them."""
    return arr_home() / "cache" / "beir"


def hash_cache_file() -> Path:
    """sha256 of base models and weight folders, keyed by path and file signatures (one JSON file)."""
    return arr_home() / "cache" / "hashes.json"


# The errors a write can meet that the user fixes on the machine, not in the input.
WRITE_FAULTS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)
# Libraries that write in C report a short write in their own words: faiss and safetensors quote
# strerror, numpy counts bytes, torch's zip writer reports its position.
_SHORT_WRITE = re.compile(r"requested and \d+ written|unexpected pos \d+ vs \d+|file write failed|write error in ")
_NEARLY_FULL_BYTES = 1 << 20


class WriteFault(ArrError):
    """A write the machine refused (full disk, I/O error): the file, and what the user still has."""

    def __init__(self, reason: str, written: Path, intact: str):
        super().__init__(f"{reason} on {filesystem_of(written)} writing {written}; {intact}")
        self.reason, self.written = reason, written


@contextmanager
def disk_writes(target: Path, intact: str) -> Iterator[None]:
    """Around the writing of `target` (a file or a folder): a full disk or an I/O error becomes one
    line naming the file, its filesystem and `intact` (what the user still has) instead of a
    library's traceback. A file the error names is named when it lies in `target`; staging files
    beside it are not, the user knows `target`. Nested, the outermost says what is intact: it
    knows what the whole operation leaves."""
    try:
        yield
    except WriteFault as fault:
        inside = Path(os.path.abspath(fault.written)).is_relative_to(os.path.abspath(target))
        raise WriteFault(fault.reason, fault.written if inside else target, intact) from None
    except ArrError:
        raise
    except Exception as exc:
        reason = _write_fault(exc, target)
        if reason is None:
            raise
        named = getattr(exc, "filename", None) or _quoted_path(str(exc))
        written = Path(named) if named and Path(os.path.abspath(named)).is_relative_to(os.path.abspath(target)) else target
        raise WriteFault(reason, written, intact) from None


def _write_fault(exc: BaseException, target: Path) -> str | None:
    if isinstance(exc, OSError) and exc.errno in WRITE_FAULTS:
        return os.strerror(exc.errno).lower()
    text = str(exc)
    for code in WRITE_FAULTS:
        if os.strerror(code) in text or f"os error {code})" in text:
            return os.strerror(code).lower()
    if _SHORT_WRITE.search(text):
        return "no space left on device" if _free_bytes(target) < _NEARLY_FULL_BYTES else "a short write"
    return None


def _quoted_path(text: str) -> str | None:
    found = re.search(r"write error in (\S+?):", text)  # faiss names the file it was writing
    return found.group(1) if found else None


def _existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(_existing(path))
    return stats.f_bavail * stats.f_frsize


def filesystem_of(path: Path) -> str:
    """The mount point holding `path` and its device, as the user's `df` names them."""
    mount = _existing(path)
    while not os.path.ismount(mount):
        mount = mount.parent
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            devices = {fields[1]: fields[0] for fields in (line.split() for line in handle) if len(fields) > 1}
    except OSError:
        devices = {}
    device = devices.get(str(mount))
    return f"{mount} ({device})" if device else str(mount)


def write_atomic(path: Path, write: Callable[[IO], None], binary: bool = False, replace: bool = True) -> None:
    """Write a file so that readers (and concurrent writers) see either no file, the old one, or
    the complete new one. `replace=False` never overwrites: if the file appeared meanwhile (another
    process wrote it), FileExistsError is raised and nothing is changed. A full disk is one line
    (`disk_writes`); the old file, if any, stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with disk_writes(path, "it was not changed" if path.exists() else "nothing was written"), \
                os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic create-if-absent
    finally:
        Path(tmp).unlink(missing_ok=True)


def save_npy_atomic(path: Path, array) -> None:
    import numpy as np

    write_atomic(path, lambda handle: np.save(handle, array), binary=True)


def write_json_atomic(path: Path, payload: Any, replace: bool = True) -> None:
    def write(handle) -> None:
        json.dump(payload, handle, indent=2, ensure_ascii=False, sort_keys=True)
        handle.write("\n")

    write_atomic(path, write, replace=replace)


FOLDER_POLICIES = ("keep", "refuse", "replace")


def write_folder_atomic(target: Path, write: Callable[[Path], None], marker: str, record: dict | Callable[[], dict],
                        existing: str = "keep") -> None:
    """Write a folder at `target` whole or not at all: `write` fills a staging folder beside it,
    `marker` (JSON: `record`, or what it returns once `write` is done) is written last, then the
    folder is renamed into place. What happens to a folder already at `target`:
      keep     a cache: a concurrent writer that got there first wins;
      refuse   a folder the user names: it must not exist or be an empty folder;
      replace  a rebuild the user asked for (`--overwrite`): the old folder goes, the new one takes its place."""
    if existing not in FOLDER_POLICIES:
        raise ValueError(f"existing must be one of {FOLDER_POLICIES}")
    if existing == "refuse" and _occupied(target):
        raise ArrError(f"{target} already exists and is not an empty folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with disk_writes(target, f"{target} is as it was" if target.exists() else "nothing was written"):
            write(staging)
            write_json_atomic(staging / marker, record() if callable(record) else record)
        if existing == "replace" and target.exists():
            _exchange(staging, target)  # the old folder is now at `staging`, removed below
            return
        try:
            os.replace(staging, target)  # onto nothing, or onto an empty folder
        except OSError:
            if existing == "refuse":
                raise ArrError(f"{target} appeared while it was being written; nothing was changed") from None
            if existing == "replace" or not (target / marker).is_file():  # not a concurrent writer that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    """Swap two folders in one step (Linux renameat2 RENAME_EXCHANGE), so that a reader or a kill
    at any moment finds the old folder or the new one at `b`, never none. Elsewhere: two renames."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a filesystem without exchange
            raise OSError(code, os.strerror(code), str(b))
    aside = a.with_name(a.name + "-old")
    os.replace(b, aside)
    os.replace(a, b)
    os.replace(aside, a)


def _occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))
