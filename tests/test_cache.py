"""`arr cache list|prune`."""

import os
import time

import pytest
from typer.testing import CliRunner

from arretrieve.cache import cache_entries, prune
from arretrieve.cli.app import app
from arretrieve.errors import ArrError
from arretrieve.home import encoding_cache_dir, reference_cache_dir


def _fill(isolated_home):
    old = encoding_cache_dir() / "model-corpus-float32-4096"
    old.mkdir(parents=True)
    (old / "shard-00000.npy").write_bytes(b"x" * 3000)
    past = time.time() - 10 * 86400
    os.utime(old / "shard-00000.npy", (past, past))
    reference_cache_dir().mkdir(parents=True)
    (reference_cache_dir() / "abc.npy").write_bytes(b"y" * 1000)


def test_list_and_prune_by_kind_and_age(isolated_home):
    _fill(isolated_home)
    entries = cache_entries()
    assert [(e.kind, e.bytes) for e in entries] == [("encodings", 3000), ("reference", 1000)]
    assert entries[0].age_days > 9
    assert [e.kind for e in prune(["all"], older_than_days=5, dry_run=True)] == ["encodings"]
    assert len(cache_entries()) == 2  # a dry run removes nothing
    assert [e.kind for e in prune(["reference"])] == ["reference"]
    assert [e.kind for e in cache_entries()] == ["encodings"]
    with pytest.raises(ArrError, match="unknown cache"):
        prune(["vectors"])


def test_cli(isolated_home):
    _fill(isolated_home)
    runner = CliRunner()
    listed = runner.invoke(app, ["cache", "list"])
    assert listed.exit_code == 0 and "model-corpus-float32-4096" in listed.output and "encodings 0.0 MB" in listed.output
    pruned = runner.invoke(app, ["cache", "prune", "encodings"])
    assert pruned.exit_code == 0 and "removed 1 entries" in pruned.output
    assert "model-corpus" not in runner.invoke(app, ["cache", "list"]).output
    runner.invoke(app, ["cache", "prune", "all"])
    assert runner.invoke(app, ["cache", "list"]).output.strip().endswith("the caches are empty")


def test_the_hash_cache_is_listed_and_pruned(isolated_home, tmp_path):
    from arretrieve.home import hash_cache_file
    from arretrieve.modeling.backbone import verified_sha256

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"z" * 100)
    digest = verified_sha256(weights)  # records the hash under the toolkit home
    assert [(e.kind, e.path) for e in cache_entries(["hashes"])] == [("hashes", hash_cache_file())]
    assert [e.kind for e in prune(["hashes"])] == ["hashes"] and not hash_cache_file().exists()
    assert verified_sha256(weights) == digest  # recomputed after the prune


def test_a_prune_killed_midway_leaves_no_entry_without_its_files(isolated_home):
    """kill -9 while a converted base is being removed: its marker must not outlive its weights
    (every later load would trust the marker), and the next prune sweeps what is left."""
    import signal
    import subprocess
    import sys

    from arretrieve.home import base_cache_dir

    base = base_cache_dir() / "0123456789abcdef01234567"
    base.mkdir(parents=True)
    (base / "model.safetensors").write_bytes(b"w" * 1000)
    (base / "arr_source.json").write_text("{}")
    script = ("import os, signal, shutil; from pathlib import Path; import arretrieve.cache as cache\n"
              "def killed_midway(path, *a, **k):\n"
              "    (Path(path) / 'model.safetensors').unlink()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "cache.shutil.rmtree = killed_midway\n"
              "cache.prune(['bases'])\n")
    killed = subprocess.run([sys.executable, "-c", script], env={**os.environ, "ARR_HOME": str(isolated_home)})
    assert killed.returncode == -signal.SIGKILL
    assert not base.exists() and cache_entries(["bases"]) == []  # nothing a load would trust
    assert prune(["bases"]) == [] and list(base_cache_dir().iterdir()) == []
