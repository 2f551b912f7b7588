"""index/: building, extending, opening and searching an index (builder, searcher, manifest, store)."""

import json

import numpy as np
import pytest

from arretrieve.corpus import Chunking, CorpusSource
from arretrieve.encoding import EncodingOptions
from arretrieve.errors import ArrError
from arretrieve.index import IndexManifest, IndexSpec, IndexStore, Searcher, add_to_index, build_index
from conftest import tiny_entry
from index_helpers import ROWS, SMALL_SHARDS, WORDS, corpus, exact_vectors


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


def test_index_recording_settings_this_version_does_not_use_is_refused(tmp_path, registry):
    build_index(corpus(tmp_path), model="tiny", spec=IndexSpec("ivf-pq"), encoding=SMALL_SHARDS, registry=registry)
    folder = IndexStore().resolve(None)
    manifest = IndexManifest.load(folder)
    manifest.index_params["search"] = {"nprobe": 2, "rerank": 100}  # the setting's name before rerank_factor
    manifest.save(folder)
    with pytest.raises(ArrError, match=r"records search settings this version does not use \(rerank\); rebuild"):
        Searcher(folder, registry=registry)


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


def test_explain_gives_every_hit_what_the_decoder_writes_from_its_states(tmp_path, registry):
    """The explanation is the frozen decoder's greedy text from the states the hit was indexed with."""
    import torch
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.modeling.loading import load_autoregembed

    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    hits = searcher.search(["yaml python library", "fonts"], k=4, mode="dense", explain=True)
    flat = [hit for found in hits for hit in found]
    assert len(flat) == 8 and all(isinstance(hit.explanation, str) for hit in flat)
    entry = registry.get("tiny")
    reader = load_autoregembed(entry, torch.float32, torch.device("cpu"), frozen_decoder=True)
    texts = [next(r for r in ROWS if r["_id"] == hit.id)["text"] for hit in flat]
    assert [hit.explanation for hit in flat] == reader.read_back(texts, entry.template("document"))
    assert all(hit.explanation is None for hit in searcher.search(["fonts"], k=2, mode="dense")[0])
    assert "explanation" in hits[0][0].to_dict()
    ran = CliRunner().invoke(app, ["search", "fonts", "-k", "2", "--mode", "dense", "--json", "--explain"])
    assert ran.exit_code == 0, ran.output
    assert [h["explanation"] for h in json.loads(ran.output)] == [h.explanation for h in hits[1][:2]]
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tfonts\n")
    refused = CliRunner().invoke(app, ["search", "--queries", str(queries), "--explain"])
    assert isinstance(refused.exception, ArrError) and "needs --json" in str(refused.exception)


def test_the_likelihood_reranker_equals_a_hand_computation_of_the_decoders_log_likelihoods(tmp_path, registry):
    """Each of the top hits is rescored by log p(query | its states) per token under the frozen
    decoder, computed here by hand from the full logits, then fused as `likelihood_fusion` says."""
    import torch

    from arretrieve.index.searcher import LIKELIHOOD_RERANK, likelihood_fusion
    from arretrieve.modeling.loading import load_autoregembed

    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    query = "yaml python library"
    first = searcher.search([query], k=6, mode="dense")[0]
    reranked = searcher.search([query], k=6, mode="dense", rerank="likelihood", rerank_depth=6)[0]
    entry = registry.get("tiny")
    model = load_autoregembed(entry, torch.float32, torch.device("cpu"), frozen_decoder=True)
    texts = [next(r for r in ROWS if r["_id"] == hit.id)["text"] for hit in first]
    target = model.tokenizer(query, add_special_tokens=False)["input_ids"] + [model.eos_id]
    by_hand = []
    with torch.no_grad():
        for text in texts:
            ids, lengths = model.pad(model.encode_texts([text], entry.template("document")).input_ids)
            states = model.compress(ids, lengths)
            with model.frozen_decoder() as decoder:
                inputs = torch.cat([model.decoder_states(states), decoder.get_input_embeddings()(torch.tensor([target]))], 1)
                logits = decoder(inputs_embeds=inputs).logits[0].log_softmax(-1)
            k = entry.num_compress_tokens
            by_hand.append(float(sum(logits[k - 1 + t, token] for t, token in enumerate(target)) / len(target)))
    assert model.query_likelihood(texts, entry.template("document"), query).numpy() == pytest.approx(by_hand, abs=1e-4)
    fused = likelihood_fusion(np.array([h.score for h in first]), np.array(by_hand), LIKELIHOOD_RERANK["weight"])
    order = np.argsort(-fused, kind="stable")
    assert [h.id for h in reranked] == [first[i].id for i in order]
    assert [h.score for h in reranked] == pytest.approx(fused[order], abs=1e-4) and [h.rank for h in reranked] == list(range(1, 7))
    # k below the depth: the top of the same reranked list; the ids-only path used by beir-eval agrees.
    assert [h.id for h in searcher.search([query], k=2, mode="dense", rerank="likelihood", rerank_depth=6)[0]] == \
        [h.id for h in reranked[:2]]
    ids = searcher.search_ids([query], 6, mode="dense", rerank_depth=6)[0]
    assert [doc for doc, _ in ids] == [h.id for h in reranked]


def test_likelihood_fusion_keeps_hits_below_the_rescored_ones_in_their_order():
    from arretrieve.index.searcher import likelihood_fusion

    fused = likelihood_fusion(np.array([0.9, 0.8, 0.7, 0.6, 0.5]), np.array([-3.0, -1.0, -2.0]), 0.5)
    assert fused[:3] == pytest.approx([0.5, 0.75, 0.25]) and fused[1] == fused.max()
    assert fused[3] > fused[4] and fused[3] <= fused[:3].min()
    flat = likelihood_fusion(np.array([0.5, 0.5]), np.array([-1.0, -1.0]), 0.2)
    assert np.all(np.isfinite(flat))


def test_rerank_options_are_honoured_or_refused(tmp_path, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.index.searcher import SearchOptions

    with pytest.raises(ArrError, match="unknown reranker 'cross'"):
        SearchOptions(rerank="cross")
    with pytest.raises(ArrError, match="give rerank too"):
        SearchOptions(rerank_depth=5)
    assert SearchOptions(k=30, rerank="likelihood").rescored == 30 and SearchOptions(rerank="likelihood").rescored == 20
    build_index(corpus(tmp_path), model="tiny", encoding=SMALL_SHARDS, registry=registry)
    ran = CliRunner().invoke(app, ["search", "fonts", "-k", "2", "--mode", "dense", "--json", "--rerank", "likelihood",
                                   "--rerank-depth", "4"])
    assert ran.exit_code == 0, ran.output
    searcher = Searcher(IndexStore().resolve(None), registry=registry)
    expected = searcher.search(["fonts"], k=2, mode="dense", rerank="likelihood", rerank_depth=4)[0]
    assert [h["id"] for h in json.loads(ran.output)] == [h.id for h in expected]
    refused = CliRunner().invoke(app, ["search", "fonts", "--rerank", "cross"])
    assert isinstance(refused.exception, ArrError) and "unknown reranker" in str(refused.exception)


def test_beir_eval_model_specs_with_a_reranker(registry, tiny_st_dir):
    from arretrieve.evaluation.retrievers import ModelSpec, parse_model_spec
    from arretrieve.registry import ModelEntry

    assert parse_model_spec("tiny", registry) == ModelSpec("tiny")
    assert parse_model_spec("bm25+tiny@rerank20", registry) == ModelSpec("tiny", "hybrid", 20)
    with pytest.raises(ArrError, match="how many top hits are rescored"):
        parse_model_spec("tiny@rerankten", registry)
    registry.add(ModelEntry(name="st", kind="sentence-transformers", base=str(tiny_st_dir), dim=32))
    with pytest.raises(ArrError, match="needs an AutoRegEmbed model's decoder"):
        parse_model_spec("st@rerank5", registry)
