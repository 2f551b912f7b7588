"""The Python API (`arretrieve.api`) and where indexes live."""

import re
from pathlib import Path

import numpy as np
import pytest

import arretrieve
from arretrieve.errors import ArrError
from arretrieve.index.store import IndexStore
from conftest import SENTENCES, tiny_entry

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def tiny_default(tiny_llama_dir):
    registry = arretrieve.Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    registry.set_default("tiny")
    return registry


def test_the_readme_block_runs_as_it_is(tiny_default):
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- README-API:[^>]*-->\n```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["hits"][0].id == "0" and scope["hits"][0].text.startswith("PyYAML")
    assert scope["vectors"].shape == (1, 64) and scope["vectors"].dtype == np.float32
    assert [h.id for h in scope["tools"]] == ["1"] and scope["scores"].shape == (1, 1)


def test_build_from_texts_or_a_path_then_open_and_search(tmp_path, tiny_default):
    index = arretrieve.Index.build(SENTENCES, ids=[f"s{i}" for i in range(6)], titles=["t"] * 6, name="sentences")
    assert len(index) == 6 and index.manifest.corpus[0]["path"] == "texts given in Python"
    hits = index.search(SENTENCES[2], k=3)
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].id == "s2" and hits[0].title == "t"
    assert [h[0].id for h in arretrieve.Index("sentences").search_many(SENTENCES[:2], k=1)] == ["s0", "s1"]
    with pytest.raises(ArrError, match="already exists"):
        arretrieve.Index.build(SENTENCES, name="sentences")

    corpus = tmp_path / "mini.jsonl"
    corpus.write_text("".join(f'{{"_id": "d{i}", "text": "{s}"}}\n' for i, s in enumerate(SENTENCES)))
    assert arretrieve.Index.build(corpus).name == "mini"
    vectors = arretrieve.encode(SENTENCES[:2], role="query")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_bad_api_input_is_one_line(tiny_default):
    cases = [
        (lambda: arretrieve.Index.build(SENTENCES), "name the index"),
        (lambda: arretrieve.Index.build([], name="x"), "no texts"),
        (lambda: arretrieve.Index.build(SENTENCES, ids=["a"], name="x"), "6 texts but 1 ids"),
        (lambda: arretrieve.Index.build([1, 2], name="x"), "must be strings"),
    ]
    for call, message in cases:
        with pytest.raises(ArrError, match=message):
            call()
    index = arretrieve.Index.build(SENTENCES, name="ok")
    with pytest.raises(ArrError, match="one query string"):
        index.search(["a", "b"])


def test_indexes_live_in_one_predictable_place(tmp_path, monkeypatch, isolated_home):
    monkeypatch.delenv("ARR_INDEXES")
    monkeypatch.chdir(tmp_path)
    assert IndexStore().root == isolated_home / "indexes"  # no ./indexes here
    with pytest.raises(ArrError, match=r"ARR_HOME/indexes, as the current folder has no ./indexes"):
        IndexStore().resolve("missing")
    (tmp_path / "indexes").mkdir()
    assert IndexStore().root == Path("indexes")
    monkeypatch.setenv("ARR_INDEXES", str(tmp_path / "elsewhere"))
    assert IndexStore().root == tmp_path / "elsewhere"
    with pytest.raises(ArrError, match=r"\$ARR_INDEXES"):
        IndexStore().resolve(None)


def test_index_search_takes_every_option_and_equals_arr_search(tiny_default):
    """One search interface: the API's options are the CLI's, and the server answers through the same `Index`."""
    import json

    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.server import ServedIndexes

    arretrieve.Index.build(SENTENCES, name="notes-api")
    hits = arretrieve.Index("notes-api").search("yaml parser", k=5, mode="bm25")
    printed = CliRunner().invoke(app, ["search", "yaml parser", "--index", "notes-api", "-k", "5", "--mode", "bm25", "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == [h.to_dict() for h in hits]
    assert arretrieve.Index("notes-api").search("yaml parser", k=2, mode="dense", collapse=False)
    with pytest.raises(ArrError, match="unknown mode"):
        arretrieve.Index("notes-api").search("yaml", mode="sparse")
    with pytest.raises(ArrError, match="nprobe"):  # a flat index has no IVF lists
        arretrieve.Index("notes-api").search("yaml", nprobe=4)
    served = ServedIndexes(["notes-api"], IndexStore(), tiny_default)
    assert isinstance(served.indexes[served.pick("notes-api")], arretrieve.Index)


def test_encode_has_sentence_transformers_shape_and_loads_the_model_once(tiny_default, monkeypatch):
    import torch

    import arretrieve.encoding as encoding
    from arretrieve import api

    api._LOADED.clear()
    loads = []
    real = encoding.load_embedder
    monkeypatch.setattr(encoding, "load_embedder", lambda *a, **k: loads.append(1) or real(*a, **k))
    one = arretrieve.encode("yaml parser", role="query")
    assert one.shape == (64,) and one.dtype == np.float32
    many = arretrieve.encode(["yaml parser", "image tools"], role="query")
    assert many.shape == (2, 64) and np.allclose(many[0], one, atol=1e-6)
    tensor = arretrieve.encode(["fonts"], convert_to_tensor=True, normalize_embeddings=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (1, 64)
    assert len(loads) == 1  # three calls, one load
    with pytest.raises(ArrError, match="normalize_embeddings=False cannot be honoured"):
        arretrieve.encode("fonts", normalize_embeddings=False)


def test_similarity_is_the_cosine_and_the_embedder_has_the_st_methods(tiny_default):
    import torch

    a, b = np.array([[3.0, 4.0], [1.0, 0.0]]), np.array([0.0, 2.0])
    expected = np.array([[0.8], [0.0]], dtype=np.float32)
    np.testing.assert_allclose(arretrieve.similarity(a, b), expected, atol=1e-6)
    assert isinstance(arretrieve.similarity(torch.tensor(a), b), torch.Tensor)
    with pytest.raises(ArrError, match="one dimension"):
        arretrieve.similarity(a, np.ones(3))
    embedder = arretrieve.load_embedder("tiny", device="cpu", dtype="float32")
    query, documents = embedder.encode_query("yaml parser"), embedder.encode_document(SENTENCES[:3])
    scores = embedder.similarity(query, documents)
    assert scores.shape == (1, 3)
    np.testing.assert_allclose(scores[0], documents @ query, atol=1e-5)
    np.testing.assert_array_equal(query, embedder.encode("yaml parser", role="query"))


def test_an_index_opens_where_it_lies(tmp_path, tiny_default):
    built = arretrieve.Index.build(SENTENCES, name="here", index_dir=tmp_path / "elsewhere")
    folder = tmp_path / "elsewhere" / "here"
    for where in (folder, str(folder), f"{folder}/"):
        assert arretrieve.Index(where).search(SENTENCES[1], k=1)[0].id == built.search(SENTENCES[1], k=1)[0].id
    with pytest.raises(ArrError, match="is not an index folder"):
        arretrieve.Index(str(tmp_path))
    with pytest.raises(ArrError, match="no index named 'here'"):
        arretrieve.Index("here")  # a bare name is looked up in the store


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_add_upsert_delete_and_get_keep_both_sides_in_step(tmp_path, tiny_default):
    index = arretrieve.Index.build(SENTENCES[:4], ids=["a", "b", "c", "d"], name="live", index_dir=tmp_path)
    index.add(SENTENCES[4:], ids=["e", "f"])
    assert len(index) == 6 and index.get("e").text == SENTENCES[4]
    with pytest.raises(ArrError, match="already in index 'live'.*upsert replaces them"):
        index.add(["again"], ids=["a"])
    index.upsert(["yaml yaml yaml replacement"], ids=["a"])
    assert len(index) == 6 and index.get("a").text == "yaml yaml yaml replacement"
    for mode in ("dense", "bm25", "hybrid"):
        hits = index.search("yaml", k=6, mode=mode)
        assert [h.id for h in hits].count("a") <= 1 and SENTENCES[0] not in [h.text for h in hits], mode
    index.delete(["b", "c"])
    assert len(index) == 4 and index.get("b") is None
    for mode in ("dense", "bm25", "hybrid"):
        ids = {h.id for h in index.search(SENTENCES[1], k=10, mode=mode)}
        assert not ids & {"b", "c"} and len(ids) == (4 if mode != "bm25" else len(ids)), mode
    assert {i for i, _ in index.searcher.search_ids([SENTENCES[2]], 10)[0]} == {"a", "d", "e", "f"}
    with pytest.raises(ArrError, match="not in index 'live'.*nothing was deleted"):
        index.delete(["d", "b"])  # b is gone already
    assert len(index) == 4
    reopened = arretrieve.Index(tmp_path / "live")
    assert len(reopened) == 4 and reopened.get("d").text == SENTENCES[3]


def test_deletes_that_fill_the_first_search_depth_are_searched_past(tmp_path, tiny_default):
    """The 20 documents nearest a query deleted from 200: the first pass (21 places) finds one live
    document, so the search goes deeper and returns the exact top 10 of the live ones, in the API
    and in the evaluation path alike."""
    texts = [f"package {i} provides {SENTENCES[i % 6].lower()} number {i * 7 % 13}" for i in range(200)]
    ids = [f"p{i}" for i in range(200)]
    index = arretrieve.Index.build(texts, ids=ids, name="many", index_dir=tmp_path, index_type="flat")
    query = texts[3]
    vectors = index.searcher.embedder.encode(texts, role="document")
    scores = vectors @ index.searcher.embedder.encode([query], role="query")[0]
    order = [ids[r] for r in np.argsort(-scores, kind="stable")]
    index.delete(order[:20])
    assert index.searcher._first_depth(10, False, 180) == 21
    expected = order[20:30]
    assert [h.id for h in index.search(query, k=10, mode="dense")] == expected
    assert [i for i, _ in index.searcher.search_ids([query], 10)[0]] == expected


def test_a_delete_or_upsert_killed_before_its_commit_leaves_the_index_as_it_was(tmp_path, tiny_default, monkeypatch):
    from arretrieve.index.manifest import IndexManifest

    index = arretrieve.Index.build(SENTENCES, ids=list("abcdef"), name="safe", index_dir=tmp_path)
    folder = tmp_path / "safe"
    before, hits = _files(folder), [h.id for h in index.search("fonts", k=6)]

    def killed(self, folder):
        raise KeyboardInterrupt  # as a kill at the commit point would

    with monkeypatch.context() as patched:
        patched.setattr(IndexManifest, "save", killed)
        for write in (lambda: index.delete(["a"]), lambda: index.upsert(["new text"], ids=["b"])):
            with pytest.raises(KeyboardInterrupt):
                write()
            assert _files(folder) == before
    assert [h.id for h in arretrieve.Index(folder).search("fonts", k=6)] == hits


def test_arr_index_delete_and_upsert(tmp_path, tiny_default):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    arretrieve.Index.build(SENTENCES, ids=list("abcdef"), name="cli", index_dir=tmp_path)
    (tmp_path / "gone.txt").write_text("a\n\nb\n")
    ran = CliRunner().invoke(app, ["index", "--delete", str(tmp_path / "gone.txt"), "--name", "cli",
                                   "--index-dir", str(tmp_path)])
    assert ran.exit_code == 0 and "now holds 4 vectors" in ran.output, ran.output
    (tmp_path / "new.jsonl").write_text('{"_id": "c", "text": "replaced"}\n{"_id": "g", "text": "new"}\n')
    ran = CliRunner().invoke(app, ["index", str(tmp_path / "new.jsonl"), "--upsert", "--name", "cli",
                                   "--index-dir", str(tmp_path)])
    assert ran.exit_code == 0 and "now holds 5 vectors" in ran.output, ran.output
    assert arretrieve.Index(tmp_path / "cli").get("c").text == "replaced"


def test_the_search_docs_block_runs_as_it_is(tiny_default):
    text = (README.parent / "docs" / "search.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- DOCS-API:[^>]*-->\n```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "docs/search.md", "exec"), scope)
    assert scope["hits"][0].id == "pyyaml" and len(scope["index"]) == 2
    assert scope["index"].get("pyyaml").text == "PyYAML reads and writes YAML" and scope["index"].get("imagemagick") is None


def test_where_filters_on_stored_metadata_in_every_mode(tmp_path, tiny_default):
    from arretrieve.index.filters import check_where

    meta = [{"section": "libs", "year": 2019}, {"section": "utils", "year": 2021}, {"section": "libs", "year": 2023},
            {"section": "fonts"}, {"section": "utils", "year": "2022"}, {"section": "libs", "year": 2024}]
    index = arretrieve.Index.build(SENTENCES, ids=list("abcdef"), metadata=meta, name="meta", index_dir=tmp_path)
    cases = [({"section": "libs"}, {"a", "c", "f"}), ({"year": {"gte": 2021, "lt": 2024}}, {"b", "c"}),
             ({"section": {"in": ["fonts", "utils"]}}, {"b", "d", "e"}), ({"section": {"ne": "libs"}}, {"b", "d", "e"}),
             ({"section": "libs", "year": {"gt": 2020}}, {"c", "f"}), ({"section": "none"}, set())]
    for where, expected in cases:
        for mode in ("dense", "bm25", "hybrid"):
            hits = index.search("fonts library yaml", k=6, mode=mode, where=where)
            got = {h.id for h in hits}
            assert got <= expected and (mode == "bm25" or got == expected), (where, mode, got)
    hit = index.search("fonts", k=1, where={"section": "fonts"})[0]
    assert hit.id == "d" and hit.metadata == {"section": "fonts", "year": None}
    assert hit.to_dict()["metadata"] == {"section": "fonts", "year": None}
    index.add(["new fonts text"], ids=["g"], metadata=[{"section": "fonts", "year": 2025}])
    assert {h.id for h in index.search("fonts", k=6, where={"section": "fonts"})} == {"d", "g"}
    index.delete(["d"])
    assert {h.id for h in index.search("fonts", k=6, where={"section": "fonts"})} == {"g"}
    for bad, message in [({"year": {"about": 3}}, "unknown operator"), ({"year": {"in": 3}}, "takes a list"),
                         ([], "object of field conditions"), ({"year": {"gte": [1]}}, "strings, numbers")]:
        with pytest.raises(ArrError, match=message):
            check_where(bad)
    with pytest.raises(ArrError, match="unknown operator"):
        index.search("fonts", where={"year": {"about": 3}})


def test_where_from_the_cli_and_the_server_options(tmp_path, tiny_default):
    import json

    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": s, "kind": "odd" if i % 2 else "even"}) + "\n"
                              for i, s in enumerate(SENTENCES)))
    built = CliRunner().invoke(app, ["index", str(corpus), "--name", "kinds", "--metadata-field", "kind",
                                     "--index-dir", str(tmp_path / "ix")])
    assert built.exit_code == 0, built.output
    ran = CliRunner().invoke(app, ["search", "fonts", "--index", "kinds", "--index-dir", str(tmp_path / "ix"),
                                   "--where", '{"kind": "odd"}', "--json", "-k", "6"])
    assert ran.exit_code == 0, ran.output
    assert {h["id"] for h in json.loads(ran.output)} == {"d1", "d3", "d5"}
    bad = CliRunner().invoke(app, ["search", "fonts", "--index", "kinds", "--index-dir", str(tmp_path / "ix"),
                                   "--where", "{kind: odd}"])
    assert "--where is not JSON" in str(bad.exception)
