"""encoding/corpus_job.py: sharded corpus encoding that resumes, is reused and splits over devices."""

import pytest

from arretrieve.encoding import EncodingOptions
from arretrieve.encoding.corpus_job import EncodeJob
from arretrieve.index import IndexSpec, IndexStore, build_index
from index_helpers import ROWS, SMALL_SHARDS, corpus


@pytest.mark.parametrize("index_type", ["flat", "hnsw-pca"])  # a graph too: same shards, same graph
def test_resume_after_a_crash_gives_identical_vectors_and_index(tmp_path, registry, monkeypatch, isolated_home, index_type):
    source = corpus(tmp_path)
    reference_store = IndexStore(tmp_path / "reference")
    with monkeypatch.context() as elsewhere:  # its own encoding cache, so nothing is shared
        elsewhere.setenv("ARR_HOME", str(tmp_path / "reference-home"))
        build_index(source, name="c", model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry, store=reference_store)

    original_save = EncodeJob.save_shard
    saved = []

    def crash_after_two_shards(self, number, vectors):
        if len(saved) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C (or kill -9) arrived mid-way
        original_save(self, number, vectors)
        saved.append(number)

    store = IndexStore(tmp_path / "resumed")
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(EncodeJob, "save_shard", crash_after_two_shards)
        build_index(source, name="c", model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry, store=store)
    (work_dir,) = (isolated_home / "cache" / "encodings").iterdir()
    assert sorted(p.name for p in work_dir.glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    assert not store.path("c").exists()
    encoded = []
    monkeypatch.setattr(EncodeJob, "encode", _recording(EncodeJob.encode, encoded))
    build_index(source, name="c", model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry, store=store)
    assert encoded == [{2, 3, 4}]  # only the missing shards were encoded again
    reference_dir = next((tmp_path / "reference-home" / "cache" / "encodings").iterdir())
    for number in range(5):
        shard = f"shard-{number:05d}.npy"
        assert (work_dir / shard).read_bytes() == (reference_dir / shard).read_bytes()
    for name in ("index-0.faiss", "docs.jsonl", "offsets-0.npy"):
        assert (store.path("c") / name).read_bytes() == (reference_store.path("c") / name).read_bytes(), name


def _recording(encode, calls):
    def wrapper(self, source, embedder, batch_size, only=None, on_progress=None):
        calls.append(set(self.pending()))
        return encode(self, source, embedder, batch_size, only, on_progress)

    return wrapper


def test_encoded_corpus_is_reused_by_later_builds(tmp_path, registry, monkeypatch):
    source = corpus(tmp_path)
    build_index(source, name="flat", model="tiny", encoding=SMALL_SHARDS, registry=registry)

    def no_encoding(*args, **kwargs):
        raise AssertionError("the model should not be loaded: the vectors are cached")

    monkeypatch.setattr("arretrieve.encoding.load_embedder", no_encoding)
    manifest = build_index(source, name="graph", model="tiny", spec=IndexSpec("hnsw"), encoding=SMALL_SHARDS, registry=registry)
    assert manifest.count == len(ROWS) and manifest.index_type == "hnsw"


def test_two_device_processes_give_the_same_index(tmp_path, registry):
    single = build_index(corpus(tmp_path), name="single", model="tiny", encoding=SMALL_SHARDS, registry=registry)
    two = EncodingOptions(shard_size=10, batch_size=4, devices=["cpu", "cpu"])
    build_index(corpus(tmp_path), name="double", model="tiny", encoding=two, registry=registry)
    store = IndexStore()
    assert (store.path("double") / "index-0.faiss").read_bytes() == (store.path("single") / "index-0.faiss").read_bytes()
    assert single.count == len(ROWS)


def test_an_altered_shard_is_encoded_again_not_reused(tmp_path, registry, monkeypatch, isolated_home, caplog):
    """A shard replaced by other vectors of the right shape would go into every later index built
    from the cache: its recorded sha256 catches it, and only that shard is encoded again."""
    import numpy as np

    source = corpus(tmp_path)
    build_index(source, name="a", model="tiny", encoding=SMALL_SHARDS, registry=registry, store=IndexStore(tmp_path / "a"))
    (work_dir,) = (isolated_home / "cache" / "encodings").iterdir()
    shard = work_dir / "shard-00001.npy"
    written = shard.read_bytes()
    np.save(shard, np.zeros_like(np.load(shard)))
    encoded = []
    monkeypatch.setattr(EncodeJob, "encode", _recording(EncodeJob.encode, encoded))
    with caplog.at_level("WARNING"):
        build_index(source, name="b", model="tiny", encoding=SMALL_SHARDS, registry=registry,
                    store=IndexStore(tmp_path / "b"))
    assert encoded == [{1}] and shard.read_bytes() == written
    assert any("sha256 differs" in r.getMessage() for r in caplog.records)
    for name in ("index-0.faiss", "docs.jsonl"):
        assert (tmp_path / "a" / "a" / name).read_bytes() == (tmp_path / "b" / "b" / name).read_bytes(), name
