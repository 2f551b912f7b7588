"""index/faiss_index.py: every index type, its build and search options, and the auto choice."""

import numpy as np
import pytest

from arretrieve.errors import ArrError
from arretrieve.index import IndexManifest, IndexSpec, IndexStore, Searcher, add_to_index, build_index
from arretrieve.index.faiss_index import plan_index, principal_axes
from index_helpers import ROWS, SMALL_SHARDS, corpus, exact_vectors


@pytest.mark.parametrize("index_type", ["hnsw", "hnsw-pca", "ivf-flat", "ivf-pq", "sq-fp16", "sq-int8"])
def test_every_index_type_builds_and_finds_the_exact_neighbours(tmp_path, registry, index_type):
    manifest = build_index(corpus(tmp_path), model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry)
    assert manifest.index_type == index_type
    params = {"nprobe": manifest.index_params["nlist"]} if index_type.startswith("ivf") else {}
    searcher = Searcher(IndexStore().resolve(None), registry=registry, search_params=params)
    documents, query_vectors = exact_vectors(searcher, ["yaml python library"])
    hits = searcher.search(["yaml python library"], k=3, mode="dense")[0]
    expected = np.argsort(-(documents @ query_vectors[0]), kind="stable")[:3]
    assert hits[0].id == ROWS[expected[0]]["_id"]
    if index_type in ("ivf-pq", "hnsw-pca"):  # re-ranked with exact inner products from the full vectors
        assert manifest.files["vectors"] == ("vectors.f32" if index_type == "ivf-pq" else None)
        assert np.allclose([h.score for h in hits], (documents @ query_vectors[0])[expected], atol=1e-5)


def test_hnsw_pca_re_ranks_exactly_and_takes_added_documents(tmp_path, registry):
    manifest = build_index(corpus(tmp_path, ROWS[:30], "part"), model="tiny", spec=IndexSpec("hnsw-pca", reduced_dim=16),
                           encoding=SMALL_SHARDS, registry=registry)
    assert (manifest.index_params["reduced_dim"], manifest.index_params["ef_construction"]) == (16, 200)
    assert manifest.index_params["search"] == {"ef_search": 80, "rerank_factor": 4}
    add_to_index(corpus(tmp_path, ROWS[30:], "rest"), name="part", encoding=SMALL_SHARDS, registry=registry)
    build_index(corpus(tmp_path), name="whole", model="tiny", encoding=SMALL_SHARDS, registry=registry)
    queries = ["yaml python library", "fonts", "compression library development"]
    # Re-ranking every vector with a graph search as wide as the index gives the exact answer.
    searcher = Searcher(IndexStore().path("part"), registry=registry, search_params={"ef_search": 48, "rerank_factor": 6})
    exact = Searcher(IndexStore().path("whole"), registry=registry).search(queries, k=8, mode="dense")
    found = searcher.search(queries, k=8, mode="dense")
    assert [[h.id for h in hits] for hits in found] == [[h.id for h in hits] for hits in exact]
    assert np.allclose([[h.score for h in hits] for hits in found], [[h.score for h in hits] for hits in exact], atol=1e-5)


@pytest.mark.parametrize("index_type", ["hnsw-pca", "ivf-pq"])
def test_re_ranked_types_scale_candidates_with_depth(tmp_path, registry, index_type):
    """k × rerank_factor candidates, even past the index size: a whole-index list comes back exact."""
    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry)
    nlist = IndexManifest.load(IndexStore().resolve(None)).index_params["nlist"]
    searcher = Searcher(IndexStore().resolve(None), registry=registry, search_params={"nprobe": nlist} if nlist else {})
    documents, query_vectors = exact_vectors(searcher, ["yaml python library"])
    hits = searcher.search(["yaml python library"], k=len(ROWS), mode="dense")[0]
    scores = documents @ query_vectors[0]
    assert [h.id for h in hits] == [ROWS[i]["_id"] for i in np.argsort(-scores, kind="stable")]
    assert np.allclose([h.score for h in hits], np.sort(scores)[::-1], atol=1e-5)


def test_graph_search_is_widened_to_the_result_list(tmp_path, registry):
    """FAISS fills k > ef_search results from a search only ef_search wide (on the Debian corpus that
    lost recall@100, BENCHMARKS.md); the searcher widens the search to the list it asks for."""
    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("hnsw"), encoding=SMALL_SHARDS, registry=registry)
    searcher = Searcher(IndexStore().resolve(None), registry=registry, search_params={"ef_search": 1})
    documents, query_vectors = exact_vectors(searcher, ["yaml python library"])
    hits = searcher.search(["yaml python library"], k=len(ROWS), mode="dense")[0]
    assert [h.id for h in hits] == [ROWS[i]["_id"] for i in np.argsort(-(documents @ query_vectors[0]), kind="stable")]
    assert searcher.index.hnsw.efSearch == len(ROWS)
    searcher.search(["yaml python library"], k=3, mode="dense")
    assert searcher.index.hnsw.efSearch == 3


def test_principal_axes_keep_the_shared_direction():
    rng = np.random.default_rng(0)
    shared = rng.normal(size=16)
    shared /= np.linalg.norm(shared)
    sample = (shared + 0.1 * rng.normal(size=(200, 16))).astype(np.float32)
    axes = principal_axes(sample, 4)
    assert axes.shape == (4, 16) and np.allclose(axes @ axes.T, np.eye(4), atol=1e-5)
    assert abs(axes[0] @ shared) > 0.99  # centred PCA would have dropped it


def test_search_settings_the_index_type_has_no_use_for_are_refused(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    with pytest.raises(ArrError, match=r"--ef-search does not apply to a flat index \(it takes no search settings\)"):
        Searcher(IndexStore().resolve(None), registry=registry, search_params={"ef_search": 10})
    build_index(corpus(tmp_path), name="graph", model="tiny", spec=IndexSpec("hnsw"), encoding=SMALL_SHARDS, registry=registry)
    with pytest.raises(ArrError, match=r"--nprobe and --rerank-factor do not apply to a hnsw index \(it takes --ef-search\)"):
        Searcher(IndexStore().path("graph"), registry=registry, search_params={"nprobe": 2, "rerank_factor": 5})
    with pytest.raises(ArrError, match="--ef-search must be at least 1"):
        Searcher(IndexStore().path("graph"), registry=registry, search_params={"ef_search": 0})


def test_unknown_index_type_is_refused_before_encoding(tmp_path, registry, monkeypatch):
    monkeypatch.setattr("arretrieve.index.builder.encode_corpus", lambda *a, **k: pytest.fail("encoded first"))
    with pytest.raises(ArrError, match="unknown index type 'lsh'"):
        build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("lsh"), registry=registry)


def test_auto_choice_follows_size_and_budget():
    assert plan_index(IndexSpec("auto"), 1000, 576).type == "flat"
    assert plan_index(IndexSpec("auto"), 1_000_000, 576).type == "hnsw"
    assert plan_index(IndexSpec("auto", memory_budget=700_000_000), 1_000_000, 576).type == "sq-int8"
    assert plan_index(IndexSpec("auto", memory_budget=1_000_000_000), 10_000_000, 576).type == "ivf-pq"
    planned = plan_index(IndexSpec("ivf-pq"), 100_000, 576)
    assert 576 % planned.pq_m == 0 and planned.pq_bits == 8 and planned.nlist > 0
    with pytest.raises(ArrError, match="unknown index type"):
        plan_index(IndexSpec("lsh"), 10, 8)


def test_hnsw_graph_options_are_recorded_and_refused_for_other_types(tmp_path, registry, monkeypatch):
    manifest = build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("hnsw", hnsw_m=8, ef_construction=200),
                           encoding=SMALL_SHARDS, registry=registry)
    assert (manifest.index_params["hnsw_m"], manifest.index_params["ef_construction"]) == (8, 200)
    index = Searcher(IndexStore().resolve(None), registry=registry).index
    assert index.hnsw.efConstruction == 200
    monkeypatch.setattr("arretrieve.index.builder.encode_corpus", lambda *a, **k: pytest.fail("encoded first"))
    with pytest.raises(ArrError, match="--ef-construction shape HNSW graphs, but this index is flat"):
        build_index(corpus(tmp_path), name="f", model="tiny", spec=IndexSpec("flat", ef_construction=200), registry=registry)
    with pytest.raises(ArrError, match="--hnsw-m must be at least 1"):
        build_index(corpus(tmp_path), name="h", model="tiny", spec=IndexSpec("hnsw", hnsw_m=0), registry=registry)
    with pytest.raises(ArrError, match=r"this index is flat \(auto: 1000 vectors"):
        plan_index(IndexSpec("auto", hnsw_m=16), 1000, 576)
    with pytest.raises(ArrError, match="--reduced-dim sets the graph dimension of hnsw-pca, but this index is hnsw"):
        build_index(corpus(tmp_path), name="h", model="tiny", spec=IndexSpec("hnsw", reduced_dim=16), registry=registry)
    with pytest.raises(ArrError, match=r"--reduced-dim must be below the vectors' dimension \(576\), got 576"):
        plan_index(IndexSpec("hnsw-pca", reduced_dim=576), 1000, 576)
    assert plan_index(IndexSpec("hnsw-pca", hnsw_m=16), 1000, 576).reduced_dim == 96


@pytest.mark.parametrize("index_type, setting", [("ivf-flat", "nprobe"), ("hnsw", "ef_search"), ("hnsw-pca", "rerank_factor")])
def test_a_calls_search_settings_apply_to_that_call_only(tmp_path, registry, index_type, setting):
    from arretrieve.index.faiss_index import current_search_params

    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry)
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    opened = current_search_params(searcher.index, index_type)
    plain = searcher.search(["yaml python library"], k=3, mode="dense")
    searcher.search(["yaml python library"], k=3, mode="dense", **{setting: 7})
    assert current_search_params(searcher.index, index_type) == opened
    assert searcher.search(["yaml python library"], k=3, mode="dense") == plain
    with pytest.raises(ArrError, match="nprobe"):
        searcher.search(["yaml"], k=3, nprobe=2) if index_type != "ivf-flat" else searcher.search(["yaml"], k=3, nprobe=0)
