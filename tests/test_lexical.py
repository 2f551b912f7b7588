"""The BM25 side of an index, hybrid fusion, and `bm25+MODEL` in beir-eval."""

import json

import numpy as np
import pytest

from arretrieve.errors import ArrError
from arretrieve.evaluation.beir_data import load_dataset
from arretrieve.evaluation.beir_eval import run_beir_eval
from arretrieve.evaluation.retrievers import bm25_retrieval
from arretrieve.index import IndexStore, Searcher, add_to_index, build_index
from arretrieve.index.lexical import fuse
from conftest import SENTENCES, write_beir_corpus

pytest.importorskip("bm25s")

ROWS = [{"_id": f"d{i}", "title": "", "text": s} for i, s in enumerate(SENTENCES)]


def test_fusion_equals_hand_computation():
    dense = (np.array([[0.9, 0.5, 0.1]], dtype=np.float32), np.array([[0, 1, 2]]))
    lexical = (np.array([[8.0, 2.0, 0.0]], dtype=np.float32), np.array([[2, 1, -1]]))
    # weighted 0.3: dense min-max → 1, .5, 0; BM25 → row 2: 1, row 1: 0.
    scores, rows = fuse(dense, lexical, 3, "weighted", 0.3)
    assert rows.tolist() == [[2, 0, 1]]
    assert scores[0].tolist() == pytest.approx([0.7, 0.3, 0.15])
    scores, rows = fuse(dense, lexical, 2, "rrf", 0.3)
    assert rows.tolist() == [[2, 1]]  # rows 1 and 2 are in both lists; 2 ranks 1st once
    assert scores[0].tolist() == pytest.approx([1 / 63 + 1 / 61, 2 / 62])
    with pytest.raises(ArrError, match="unknown fusion"):
        fuse(dense, lexical, 2, "max", 0.5)


def test_bm25_mode_is_beir_evals_bm25_and_modes_are_checked(tmp_path, registry):
    folder = write_beir_corpus(tmp_path / "c", ROWS)
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "yaml files in python"}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\n")
    manifest = build_index(folder, model="tiny", registry=registry)
    assert manifest.files["bm25"] == "bm25-0" and (IndexStore().path("c") / "bm25-0").is_dir()
    searcher = Searcher(IndexStore().resolve("c"), registry=registry)
    assert searcher.default_mode == "hybrid"
    lexical = searcher.search(["yaml files in python"], k=3, mode="bm25")[0]
    expected = bm25_retrieval(load_dataset(str(folder)), 3).results["q1"]
    assert [h.id for h in lexical] == list(expected) and lexical[0].id == "d0"
    assert [h.score for h in lexical] == pytest.approx(list(expected.values()))
    hybrid = searcher.search(["yaml files in python"], k=6, mode="hybrid")[0]
    assert len(hybrid) == 6 and hybrid[0].id == "d0"
    with pytest.raises(ArrError, match="unknown mode"):
        searcher.search(["x"], mode="sparse")

    build_index(folder, name="dense-only", model="tiny", registry=registry, bm25=False)
    dense_only = Searcher(IndexStore().resolve("dense-only"), registry=registry)
    assert dense_only.default_mode == "dense" and len(dense_only.search(["yaml"], k=2)[0]) == 2
    with pytest.raises(ArrError, match="no BM25 side"):
        dense_only.search(["yaml"], mode="hybrid")


def test_add_keeps_both_sides_in_step(tmp_path, registry):
    build_index(write_beir_corpus(tmp_path / "c", ROWS[:4]), model="tiny", registry=registry)
    manifest = add_to_index(write_beir_corpus(tmp_path / "more", ROWS[4:]), name="c", registry=registry)
    folder = IndexStore().path("c")
    assert manifest.files["bm25"] == "bm25-1" and not (folder / "bm25-0").exists()
    searcher = Searcher(folder, registry=registry)
    assert searcher.search(["quick brown fox"], k=1, mode="bm25")[0][0].id == "d5"  # an added document
    assert searcher.search(["yaml files"], k=1, mode="bm25")[0][0].id == "d0"  # an original one


def test_beir_eval_runs_the_hybrid(tmp_path, registry):
    folder = write_beir_corpus(tmp_path / "c", ROWS)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": s[:20]}) + "\n"
                                                  for i, s in enumerate(SENTENCES)))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"q{i}\td{i}\t1\n" for i in range(len(SENTENCES))))
    records = run_beir_eval([str(folder)], ["bm25", "tiny", "bm25+tiny"], output=tmp_path / "out", registry=registry)
    by_model = {r.model: r for r in records}
    assert by_model["bm25+tiny"].payload["retriever"]["mode"] == "hybrid"
    assert by_model["bm25+tiny"].payload["retriever"]["fusion"] in ("weighted", "rrf")
    assert 0 < by_model["bm25+tiny"].metrics["NDCG@10"] <= 1
    with pytest.raises(ArrError):
        run_beir_eval([str(folder)], ["bm25+nope"], output=tmp_path / "out", registry=registry)


def test_the_bm25_files_are_the_same_in_every_process(tmp_path):
    """bm25s numbers its vocabulary in set order, which follows the process's hash seed: the same
    texts must still give the same files (an interrupted build or an --add re-run is byte-identical)."""
    import os
    import subprocess
    import sys

    script = ("import sys; from pathlib import Path; from arretrieve.index.lexical import build_bm25, save_bm25;"
              f"save_bm25(build_bm25({SENTENCES!r} * 3), Path(sys.argv[1]))")
    for seed in ("1", "2"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / seed)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*") if p.is_file())
    assert files and all((tmp_path / "1" / f).read_bytes() == (tmp_path / "2" / f).read_bytes() for f in files)


def test_texts_without_any_token_build_a_bm25_that_matches_nothing():
    from arretrieve.index.lexical import build_bm25, search_bm25

    scores, rows = search_bm25(build_bm25(["x", "a of the"]), ["x"], depth=2, count=2)
    assert (rows == -1).all()


def test_bm25_stems_and_an_index_from_before_stemming_keeps_searching_unstemmed(tmp_path):
    from arretrieve.index.lexical import SETTINGS_FILE, build_bm25, load_bm25, save_bm25, search_bm25

    texts = ["a yaml parser for python", "fonts for the console"]
    stemmed = build_bm25(texts)
    assert search_bm25(stemmed, ["parsers"], 1, 2)[1][0][0] == 0  # parsers → parser
    save_bm25(stemmed, tmp_path / "new")
    assert json.loads((tmp_path / "new" / SETTINGS_FILE).read_text()) == {"stemmer": "english"}
    assert load_bm25(tmp_path / "new").arr_stemmer == "english"
    save_bm25(build_bm25(texts, None), tmp_path / "old")
    (tmp_path / "old" / SETTINGS_FILE).unlink()  # as an index built before stemming was saved
    old = load_bm25(tmp_path / "old")
    assert old.arr_stemmer is None
    assert (search_bm25(old, ["parsers"], 1, 2)[1] == -1).all()  # its vocabulary holds "parser" unstemmed
    assert search_bm25(old, ["parser"], 1, 2)[1][0][0] == 0
