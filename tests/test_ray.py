"""encoding/ray_job.py: corpus encoding on a real local Ray cluster, sharing the single-process job's
cache and resume.

The cluster is `ray.init` on loopback with two CPUs, so two actors run in two worker processes; a
head plus a second node (`ray start`, or ray.cluster_utils.Cluster) was tried on these machines and
does not come up: the nodes and the driver look for the GCS at the machine's outer address, and
Ray 2.60's token authentication refuses the second node."""

from dataclasses import replace

import numpy as np
import pytest

from arretrieve.corpus import CorpusSource
from arretrieve.encoding import EncodingOptions, encode_corpus
from arretrieve.errors import ArrError
from arretrieve.index import IndexManifest, IndexSpec, IndexStore, Searcher, build_index
from index_helpers import SMALL_SHARDS, corpus

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def _shards(job):
    return [job.shard_path(n).read_bytes() for n in range(job.shards)]


def test_ray_vectors_equal_the_local_ones_and_a_stopped_run_resumes(tmp_path, registry, monkeypatch, cluster, capfd):
    source = CorpusSource(corpus(tmp_path))
    entry = registry.get("tiny")
    local = encode_corpus(source, entry, SMALL_SHARDS)
    local_files = _shards(local)
    with monkeypatch.context() as elsewhere:  # its own encoding cache
        elsewhere.setenv("ARR_HOME", str(tmp_path / "ray-home"))
        on_ray = encode_corpus(source, entry, replace(SMALL_SHARDS, ray="auto", workers=2, show_progress=True))
        assert on_ray.work_dir != local.work_dir and _shards(on_ray) == local_files  # byte-identical shards
        assert "encoding on Ray, shard 5/5: 48/48 texts (100%)" in capfd.readouterr().err  # shards done / total
        # A run stopped with shards 1 and 3 unwritten (no hash: as after a kill) encodes only those.
        for number in (1, 3):
            on_ray._hash_path(number).unlink()
            on_ray.shard_path(number).write_bytes(b"half-written")
        before = {n: on_ray.shard_path(n).stat().st_mtime_ns for n in (0, 2, 4)}
        resumed = encode_corpus(source, entry, replace(SMALL_SHARDS, ray="auto", workers=1))
        assert _shards(resumed) == local_files
        assert {n: resumed.shard_path(n).stat().st_mtime_ns for n in (0, 2, 4)} == before


def test_arr_index_on_ray_searches_as_a_local_index(tmp_path, registry, cluster):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from index_helpers import ROWS

    small = corpus(tmp_path, rows=ROWS[:12], name="small")
    runner = CliRunner()
    ran = runner.invoke(app, ["index", str(small), "--name", "on-ray", "--model", "tiny", "--ray", "auto", "--workers", "1"])
    assert ran.exit_code == 0, ran.output
    store = IndexStore()
    build_index(small, name="local", model="tiny", spec=IndexSpec("auto"), registry=registry, store=store,
                encoding=EncodingOptions(shard_size=5))  # other shards: encoded again, here, by this process
    hits = [[(h.id, round(h.score, 5)) for h in Searcher(store.path(n), registry=registry).search(["yaml parser"], 5, mode="dense")[0]]
            for n in ("on-ray", "local")]
    assert hits[0] == hits[1] and len(hits[0]) == 5


def test_ray_refusals_are_one_line(tmp_path, registry, monkeypatch):
    source = CorpusSource(corpus(tmp_path))
    entry = registry.get("tiny")
    with pytest.raises(ArrError, match="give --ray or --devices, not both"):
        encode_corpus(source, entry, EncodingOptions(ray="auto", devices=["cpu", "cpu"]))
    with pytest.raises(ArrError, match="--workers sets the Ray actors of --ray"):
        encode_corpus(source, entry, EncodingOptions(workers=2))
    with pytest.raises(ArrError, match="--workers must be at least 1"):  # not the default in disguise
        encode_corpus(source, entry, EncodingOptions(ray="auto", workers=0))
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ArrError, match=r"--ray needs Ray: pip install 'arretrieve\[distributed\]'"):
        encode_corpus(source, entry, EncodingOptions(ray="local"))


def test_a_failing_worker_is_one_line_naming_the_shard_and_finished_shards_stay(tmp_path, registry):
    """`_run` against a stand-in for Ray whose second shard's task died of an out-of-memory kill."""
    import types

    from arretrieve.encoding.corpus_job import EncodeJob, EncodeJobSpec
    from arretrieve.encoding.ray_job import _run

    class OutOfMemoryError(Exception):
        pass

    class Ref:
        def __init__(self, texts):
            self.texts = texts

    class Actor:
        class encode:  # noqa: N801 - Ray's `actor.method.remote(...)` shape
            @staticmethod
            def remote(texts):
                return Ref(texts)

    def get(ref):
        if "second" in ref.texts[0]:
            raise OutOfMemoryError("Task was killed due to the node running low on memory.")
        return np.zeros((len(ref.texts), 4), dtype=np.float32)

    exceptions = types.SimpleNamespace(RayError=Exception, OutOfMemoryError=OutOfMemoryError)
    fake = types.SimpleNamespace(wait=lambda refs, num_returns: ([refs[0]], refs[1:]), get=get, exceptions=exceptions)
    rows = [{"_id": f"d{i}", "text": ("second shard " if 2 <= i < 4 else "text ") + str(i)} for i in range(6)]
    source = CorpusSource(corpus(tmp_path, rows=rows))
    job = EncodeJob(EncodeJobSpec("f", source.fingerprint(), "float32", 2, 6), tmp_path / "jobs")
    job.prepare()
    with pytest.raises(ArrError, match=r"a Ray worker failed on shard 1 \(finished shards are kept; re-run to resume\): "
                                       r"Ray killed it: its node ran low on memory"):
        _run(fake, job, job.pending_texts(source), [Actor()], None)
    assert job.pending() == [1, 2]  # shard 0 was written before the failure was collected


def test_arr_index_on_ray_killed_mid_way_resumes_to_the_same_shards(tmp_path, registry, cluster):
    """A real kill -9 of `arr index --ray` after a few shards; the same command then finishes, and
    every shard equals the single-process job's."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from conftest import write_beir_corpus
    from index_helpers import WORDS

    rows = [{"_id": f"r{i:03d}", "title": "", "text": " ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(6 + i % 9))}
            for i in range(400)]
    folder = write_beir_corpus(tmp_path / "many", rows)
    options = EncodingOptions(shard_size=2, batch_size=2)
    local = encode_corpus(CorpusSource(folder), registry.get("tiny"), options)
    expected = _shards(local)
    shutil.rmtree(local.work_dir)  # the Ray run starts from nothing, in the same cache folder
    command = [sys.executable, "-m", "arretrieve.cli.app", "index", str(folder), "--name", "killed", "--model", "tiny",
               "--ray", ray.get_runtime_context().gcs_address, "--workers", "1", "--shard-size", "2", "--batch-size", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = local.work_dir
    deadline = time.monotonic() + 120
    while len(list(cache.glob("shard-*.sha256"))) < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = len(list(cache.glob("shard-*.sha256")))
    assert 5 <= done_at_kill < 200, f"the run was not stopped mid-way ({done_at_kill} of 200 shards)"
    finished = subprocess.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert _shards(local) == expected
    assert IndexManifest.load(IndexStore().path("killed")).count == len(rows)
