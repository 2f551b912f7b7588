"""A disk that fills up, for the write-path tests.

Where the test may mount (root on Linux) it is a real small tmpfs, filled to the last byte by a filler
file, so every writer (faiss, numpy, safetensors, torch, plain files) meets the real ENOSPC. Elsewhere
the writes under it are made to fail with an injected OSError(ENOSPC) at the calls the toolkit's
writers end in (fsync of an atomic file, faiss, numpy, safetensors, torch).
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path


def can_mount() -> bool:
    """ARR_TEST_INJECT_FAULTS=1 takes the injected path even where mounting works (to test it)."""
    if os.environ.get("ARR_TEST_INJECT_FAULTS") == "1":
        return False
    return os.name == "posix" and os.geteuid() == 0 and _mount_works()


def _mount_works() -> bool:
    probe = Path("/tmp") / f"arr-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)],
                                 capture_output=True).returncode == 0
        if mounted:
            subprocess.run(["umount", str(probe)], check=True)
        return mounted
    except OSError:
        return False
    finally:
        probe.rmdir()


class FullDisk:
    """`path` is a folder on a filesystem that `fill()` leaves without space and `free()` gives back."""

    def __init__(self, path: Path, size_mib: int = 64):
        import pytest

        self.path, self.real = path, can_mount()
        self._monkeypatch, self._filled = pytest.MonkeyPatch(), False  # its own: free() undoes only the injection
        path.mkdir(parents=True, exist_ok=True)
        if self.real:
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(path)], check=True)

    def fill(self) -> None:
        self._filled = True
        if self.real:
            with open(self.path / ".filler", "wb", buffering=0) as handle:  # unbuffered: nothing left to flush
                for size in (1 << 16, 4096, 512, 1):  # down to the last partial block
                    try:
                        while True:
                            handle.write(b"\0" * size)
                    except OSError as exc:
                        assert exc.errno == errno.ENOSPC
        else:
            self._inject()

    def free(self) -> None:
        self._filled = False
        if self.real:
            (self.path / ".filler").unlink(missing_ok=True)
        else:
            self._monkeypatch.undo()

    def close(self) -> None:
        if self.real:
            subprocess.run(["umount", "-l", str(self.path)], check=False)

    def _under(self, target) -> bool:
        return self._filled and os.path.abspath(str(target)).startswith(str(self.path))

    def _inject(self) -> None:
        import faiss
        import numpy as np
        import safetensors.torch
        import torch

        def failing(original, path_of):
            def call(*args, **kwargs):
                target = path_of(*args, **kwargs)
                if isinstance(target, (str, os.PathLike)) and self._under(target):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
                return original(*args, **kwargs)
            return call

        fsync = os.fsync
        patch = self._monkeypatch.setattr
        patch(os, "fsync", failing(fsync, lambda fd: os.readlink(f"/proc/self/fd/{fd}")))
        patch(faiss, "write_index", failing(faiss.write_index, lambda index, path, *a: path))
        patch(np, "save", failing(np.save, lambda file, *a, **k: file))
        patch(safetensors.torch, "save_file", failing(safetensors.torch.save_file, lambda t, filename, *a, **k: filename))
        patch(torch, "save", failing(torch.save, lambda obj, f, *a, **k: f))
