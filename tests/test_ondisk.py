"""index/ondisk.py: IVF indexes built in blocks and merged on disk equal the one-shot build."""

import shutil

import numpy as np
import pytest

from arretrieve.errors import ArrError
from arretrieve.index import IndexManifest, IndexSpec, IndexStore, Searcher, add_to_index, build_index
from arretrieve.index.faiss_index import IndexParams, create_index, faiss_module, plan_index
from arretrieve.index.ondisk import _blocks, build_on_disk, read_on_disk
from index_helpers import ROWS, SMALL_SHARDS, corpus

QUERIES = ["yaml python library", "fonts", "compression library development", "network tools"]
TINY_BUDGET = 200  # bytes: below even IVF-PQ's codes for 48 rows, so blocks of one row


def _same_hits(folder, other, registry):
    found, expected = (Searcher(f, registry=registry).search(QUERIES, k=10, mode="dense") for f in (folder, other))
    assert [[h.id for h in hits] for hits in found] == [[h.id for h in hits] for hits in expected]
    assert [[h.score for h in hits] for hits in found] == [[h.score for h in hits] for hits in expected]


def test_blocks_regroup_shards_in_order_with_their_row_ids():
    shards = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([3, 5, 1, 4])]
    blocks = list(_blocks(iter(shards), rows=4, first_id=10))
    assert [len(b) for b, _ in blocks] == [4, 4, 4, 1]
    assert np.array_equal(np.concatenate([ids for _, ids in blocks]), np.arange(10, 23))
    assert np.array_equal(np.concatenate([b for b, _ in blocks]), np.concatenate(shards))


@pytest.mark.parametrize("index_type", ["ivf-flat", "ivf-pq"])
def test_merged_lists_equal_the_one_shot_index(tmp_path, index_type):
    """Many lists, many blocks, several workers: the same ids in every list, so the same answers."""
    faiss = faiss_module()
    vectors = np.random.default_rng(0).standard_normal((3000, 32)).astype(np.float32)
    faiss.normalize_L2(vectors)
    params = IndexParams(type=index_type, nlist=16, pq_m=8, pq_bits=6)
    trained = create_index(params, 32, vectors[:2000])
    one_shot = faiss.deserialize_index(faiss.serialize_index(trained))
    one_shot.add(vectors)
    shards = (vectors[i:i + 700] for i in range(0, 3000, 700))
    build_on_disk(faiss.serialize_index(trained), shards, tmp_path / "index.faiss", tmp_path / "lists.ivfdata",
                  rows_per_block=450, workers=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.faiss", "lists.ivfdata"]  # the blocks are gone
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    shutil.move(tmp_path, moved)  # the lists file is found beside the index, not where it was built
    merged = read_on_disk(moved / "index.faiss", moved / "lists.ivfdata")
    for index in (one_shot, merged):
        faiss.extract_index_ivf(index).nprobe = 4
    queries = vectors[:50] + 0.05
    expected, found = one_shot.search(queries, 10), merged.search(queries, 10)
    assert merged.ntotal == 3000
    assert np.array_equal(expected[1], found[1]) and np.array_equal(expected[0], found[0])


@pytest.mark.parametrize("index_type", ["ivf-flat", "ivf-pq"])
def test_a_build_over_the_memory_budget_merges_on_disk_and_answers_as_the_one_shot_build(tmp_path, registry, capfd,
                                                                                           index_type):
    whole = build_index(corpus(tmp_path), name="whole", model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS,
                        registry=registry)
    merged = build_index(corpus(tmp_path), name="merged", model="tiny", encoding=SMALL_SHARDS, registry=registry,
                         spec=IndexSpec(index_type, memory_budget=TINY_BUDGET))
    assert not whole.index_params["on_disk"] and whole.files["lists"] is None
    assert merged.index_params["on_disk"] and merged.files["lists"] == "lists-0.ivfdata"
    assert "over the 0.2 kB budget: inverted lists built in blocks and merged on disk" in merged.index_params["reason"]
    assert "resizing" not in capfd.readouterr().out  # FAISS's own print is kept out of the command's output
    store = IndexStore()
    _same_hits(store.path("merged"), store.path("whole"), registry)


def test_adding_to_an_on_disk_index_merges_into_the_next_generation(tmp_path, registry):
    spec = IndexSpec("ivf-pq", memory_budget=TINY_BUDGET)
    build_index(corpus(tmp_path, ROWS[:30], "part"), model="tiny", spec=spec, encoding=SMALL_SHARDS, registry=registry)
    searcher = Searcher(IndexStore().path("part"), registry=registry)  # open across the add: its files stay readable
    before = searcher.search(QUERIES, k=5, mode="dense")
    added = add_to_index(corpus(tmp_path, ROWS[30:], "rest"), name="part", encoding=SMALL_SHARDS, registry=registry)
    assert added.files["lists"] == "lists-1.ivfdata" and added.count == len(ROWS)
    folder = IndexStore().path("part")
    assert not (folder / "lists-0.ivfdata").exists() and not any(p.name.startswith(".blocks") for p in folder.iterdir())
    assert [[h.id for h in hits] for hits in searcher.search(QUERIES, k=5, mode="dense")] == [[h.id for h in hits] for hits in before]
    build_index(corpus(tmp_path), name="whole", model="tiny", spec=spec, encoding=SMALL_SHARDS, registry=registry)
    _same_hits(folder, IndexStore().path("whole"), registry)


def test_types_that_cannot_go_to_disk_are_refused_over_the_budget():
    with pytest.raises(ArrError, match="over the 1 MB budget; choose ivf-flat or ivf-pq"):
        plan_index(IndexSpec("hnsw", memory_budget=1_000_000), 100_000, 576)
    assert not plan_index(IndexSpec("flat", memory_budget=1_000_000_000), 100_000, 576).on_disk
    planned = plan_index(IndexSpec("auto", memory_budget=100_000_000), 10_000_000, 576)
    assert (planned.type, planned.on_disk) == ("ivf-pq", True)
    assert "merged on disk" in planned.reason


def test_a_missing_lists_file_is_one_line(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("ivf-flat", memory_budget=TINY_BUDGET),
                encoding=SMALL_SHARDS, registry=registry)
    folder = IndexStore().resolve(None)
    (folder / IndexManifest.load(folder).files["lists"]).unlink()
    with pytest.raises(ArrError, match="missing or corrupted"):
        Searcher(folder, registry=registry)
