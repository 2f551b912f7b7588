import json

import numpy as np
import pytest

from arretrieve.corpus import Chunking, CorpusSource
from arretrieve.errors import ArrError
from arretrieve.encoding import EncodingOptions
from arretrieve.index import IndexManifest, IndexStore, Searcher, add_to_index, build_index
from arretrieve.encoding.corpus_job import EncodeJob
from arretrieve.index import IndexSpec
from arretrieve.index.faiss_index import plan_index, principal_axes
from conftest import SENTENCES, tiny_entry, write_beir_corpus

WORDS = " ".join(SENTENCES).split()
# 48 distinct small documents from the shared vocabulary.
ROWS = [
    {"_id": f"d{i:02d}", "title": "", "text": " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(5 + i % 7))}
    for i in range(48)
]
SMALL_SHARDS = EncodingOptions(shard_size=10, batch_size=4)


def corpus(tmp_path, rows=ROWS, name="corpus"):
    return write_beir_corpus(tmp_path / name, rows)


def exact_vectors(searcher, queries):
    """Document and query vectors computed directly, for brute-force comparisons."""
    texts = [d.full_text for d in CorpusSource(searcher.manifest.corpus[0]["path"]).documents()]
    return searcher.embedder.encode(texts, role="document"), searcher.embedder.encode(queries, role="query")


def test_flat_search_equals_brute_force_numpy(tmp_path, registry):
    manifest = build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    assert manifest.index_type == "flat" and manifest.count == len(ROWS)
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    queries = ["yaml python library", "fonts for the desktop"]
    documents, query_vectors = exact_vectors(searcher, queries)
    for hits, query_vector in zip(searcher.search(queries, k=5, mode="dense"), query_vectors):
        scores = documents @ query_vector
        assert [h.id for h in hits] == [ROWS[i]["_id"] for i in np.argsort(-scores, kind="stable")[:5]]
        assert np.allclose([h.score for h in hits], np.sort(scores)[::-1][:5], atol=1e-5)


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


def test_index_recording_settings_this_version_does_not_use_is_refused(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("ivf-pq"), encoding=SMALL_SHARDS, registry=registry)
    folder = IndexStore().resolve(None)
    manifest = IndexManifest.load(folder)
    manifest.index_params["search"] = {"nprobe": 2, "rerank": 100}  # the setting's name before rerank_factor
    manifest.save(folder)
    with pytest.raises(ArrError, match=r"records search settings this version does not use \(rerank\); rebuild"):
        Searcher(folder, registry=registry)


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


@pytest.mark.parametrize("index_type", ["flat", "hnsw-pca"])  # a graph too: same shards, same graph
def test_resume_after_a_crash_gives_identical_vectors_and_index(tmp_path, registry, monkeypatch, isolated_home, index_type):
    source = corpus(tmp_path)
    reference_store = IndexStore(tmp_path / "reference")
    with monkeypatch.context() as elsewhere:  # its own encoding cache, so nothing is shared
        elsewhere.setenv("ARR_HOME", str(tmp_path / "reference-home"))
        build_index(source, name="c", model="tiny", spec=IndexSpec(index_type), encoding=SMALL_SHARDS, registry=registry, store=reference_store)

    original_save = EncodeJob._save
    saved = []

    def crash_after_two_shards(self, number, vectors):
        if len(saved) == 2:
            raise KeyboardInterrupt  # as if Ctrl-C (or kill -9) arrived mid-way
        original_save(self, number, vectors)
        saved.append(number)

    store = IndexStore(tmp_path / "resumed")
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(EncodeJob, "_save", crash_after_two_shards)
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


def test_add_appends_documents_like_a_full_build(tmp_path, registry):
    build_index(corpus(tmp_path, ROWS[:30], "part"), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    manifest = add_to_index(corpus(tmp_path, ROWS[30:], "rest"), name="part", encoding=SMALL_SHARDS, registry=registry)
    assert manifest.count == len(ROWS) and manifest.generation == 1 and len(manifest.corpus) == 2
    folder = IndexStore().path("part")
    assert sorted(p.name for p in folder.iterdir()) == ["bm25-1", "docs.jsonl", "index-1.faiss", "manifest.json", "offsets-1.npy"]
    build_index(corpus(tmp_path), name="whole", model="tiny", encoding=SMALL_SHARDS, registry=registry)
    queries = ["yaml python library", "fonts", "compression library development"]
    for mode in ("dense", "bm25", "hybrid"):  # both sides of the index stay in step
        added = Searcher(folder, registry=registry).search(queries, k=8, mode=mode)
        whole = Searcher(IndexStore().path("whole"), registry=registry).search(queries, k=8, mode=mode)
        assert [[h.id for h in hits] for hits in added] == [[h.id for h in hits] for hits in whole], mode
    with pytest.raises(ArrError, match="already in index"):
        add_to_index(corpus(tmp_path, ROWS[:3], "again"), name="part", encoding=SMALL_SHARDS, registry=registry)


def test_interrupted_add_leaves_the_index_usable(tmp_path, registry, monkeypatch):
    build_index(corpus(tmp_path, ROWS[:20], "part"), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr("arretrieve.index.builder.append_documents", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        add_to_index(corpus(tmp_path, ROWS[20:], "rest"), name="part", encoding=SMALL_SHARDS, registry=registry)
    assert Searcher(IndexStore().path("part"), registry=registry).manifest.count == 20
    assert add_to_index(corpus(tmp_path, ROWS[20:], "rest"), name="part", encoding=SMALL_SHARDS, registry=registry).count == 48


def test_changed_model_entry_is_refused(tmp_path, registry, tiny_llama_dir):
    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    changed = tiny_entry(tiny_llama_dir, name="tiny", prompts={**registry.get("tiny").prompts, "document": "D: {text}"})
    registry.add(changed, overwrite=True)
    with pytest.raises(ArrError, match="fingerprint"):
        Searcher(IndexStore().resolve("corpus"), registry=registry)
    with pytest.raises(ArrError, match="fingerprint"):
        add_to_index(corpus(tmp_path, ROWS[:1], "one"), name="corpus", registry=registry)


def test_removed_model_is_explained(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    registry.remove("tiny")
    with pytest.raises(ArrError, match="built with model 'tiny', which is no longer in the registry"):
        Searcher(IndexStore().resolve(None), registry=registry)
    with pytest.raises(ArrError, match="built with model 'tiny', which is no longer in the registry"):
        add_to_index(corpus(tmp_path, ROWS[:1], "one"), name="corpus", registry=registry)


def test_corrupted_or_missing_files_are_one_line_errors(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    folder = IndexStore().resolve("corpus")
    (folder / "offsets-0.npy").write_bytes(b"junk")
    with pytest.raises(ArrError, match="offsets-0.npy is missing or corrupted"):
        Searcher(folder, registry=registry)
    (folder / "index-0.faiss").write_bytes(b"garbage")
    with pytest.raises(ArrError, match="missing or corrupted"):
        Searcher(folder, registry=registry)
    (folder / "manifest.json").write_text("{")
    with pytest.raises(ArrError, match="corrupted"):
        Searcher(folder, registry=registry)


def test_store_resolution_and_existing_names(tmp_path, registry):
    store = IndexStore()
    with pytest.raises(ArrError, match="no index"):
        store.resolve(None)
    build_index(corpus(tmp_path, name="a"), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    with pytest.raises(ArrError, match="already exists"):
        build_index(corpus(tmp_path, name="a"), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    build_index(corpus(tmp_path, name="b"), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    with pytest.raises(ArrError, match="choose one with --index"):
        store.resolve(None)
    assert store.resolve("b").name == "b"
    with pytest.raises(ArrError, match="no index named"):
        store.resolve("c")


def test_chunked_index_collapses_hits_per_document(tmp_path, registry):
    long_rows = [{"_id": f"long{i}", "title": "", "text": " ".join(WORDS[i:] + WORDS[:i])} for i in range(4)]
    options = EncodingOptions(chunking=Chunking(words=8, overlap=2), shard_size=10)
    manifest = build_index(corpus(tmp_path, long_rows), model="tiny", encoding=options, registry=registry)
    assert manifest.count == 4 * len(list(Chunking(8, 2).split(CorpusSource(corpus(tmp_path, long_rows)).documents().__next__())))
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    hits = searcher.search(["yaml"], k=3)[0]
    assert len({h.id for h in hits}) == 3 and all(h.chunk.startswith(h.id + "#") for h in hits)
    chunks = searcher.search(["yaml"], k=3, collapse=False)[0]
    assert all("#" in h.id for h in chunks)


def test_two_device_processes_give_the_same_index(tmp_path, registry):
    single = build_index(corpus(tmp_path), name="single", model="tiny", encoding=SMALL_SHARDS, registry=registry)
    two = EncodingOptions(shard_size=10, batch_size=4, devices=["cpu", "cpu"])
    build_index(corpus(tmp_path), name="double", model="tiny", encoding=two, registry=registry)
    store = IndexStore()
    assert (store.path("double") / "index-0.faiss").read_bytes() == (store.path("single") / "index-0.faiss").read_bytes()
    assert single.count == len(ROWS)


def test_manifest_records_how_the_index_was_built(tmp_path, registry):
    manifest = build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    stored = IndexManifest.load(IndexStore().resolve(None))
    assert stored == manifest
    assert stored.model_fingerprint == registry.get("tiny").fingerprint
    assert stored.encoder["prompts"]["document"].startswith("Passage:")
    assert stored.encoder["dtype"] == "float32" and stored.dim == 64 and stored.metric == "inner_product"
    assert stored.corpus[0]["fingerprint"] and stored.toolkit_version
    rows = [json.loads(line) for line in (IndexStore().resolve(None) / "docs.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["_id"] for r in ROWS]
