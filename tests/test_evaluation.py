import json

import pytest

from arretrieve.errors import ArrError
from arretrieve.evaluation import bar_chart, compute_metrics, load_dataset, markdown_table, run_beir_eval
from arretrieve.encoding.corpus_job import EncodeJob
from conftest import SENTENCES

QRELS = {"q1": {"d1": 1}, "q2": {"d3": 1, "d4": 1}}
RESULTS = {"q1": {"d2": 0.9, "d1": 0.8, "d3": 0.1}, "q2": {"d3": 0.9, "d1": 0.5, "d4": 0.4}}


def test_metrics_equal_a_hand_computation():
    metrics = compute_metrics(QRELS, RESULTS)
    # q1: its one relevant document at rank 2; q2: relevant at ranks 1 and 3 of two.
    ndcg_q1 = (1 / 1.5849625) / 1
    ndcg_q2 = (1 + 1 / 2) / (1 + 1 / 1.5849625)
    assert metrics["NDCG@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-5)
    assert metrics["MRR@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["Recall@1"] == pytest.approx((0 + 1 / 2) / 2)
    assert metrics["P@3"] == pytest.approx((1 / 3 + 2 / 3) / 2, abs=1e-5)
    assert metrics["MAP@10"] == pytest.approx((1 / 2 + (1 + 2 / 3) / 2) / 2, abs=1e-5)
    assert metrics["Recall@100"] == 1.0
    assert {"NDCG@1", "NDCG@3", "NDCG@5", "NDCG@100", "MAP@100", "P@100", "MRR@100"} <= set(metrics)


def test_identical_ids_are_dropped_only_when_asked():
    qrels = {"q1": {"d1": 1}}
    results = {"q1": {"q1": 0.99, "d1": 0.5}}
    assert compute_metrics(qrels, results, ignore_identical_ids=True)["MRR@10"] == 1.0
    assert compute_metrics(qrels, results, ignore_identical_ids=False)["MRR@10"] == 0.5
    assert results == {"q1": {"q1": 0.99, "d1": 0.5}}  # the caller's results are left alone


def beir_folder(root, corpus_rows=None, queries=None, qrels="q0\td0\t1\nq1\td1\t1\n"):
    folder = root / "tinybeir"
    (folder / "qrels").mkdir(parents=True)
    corpus_rows = corpus_rows or [{"_id": f"d{i}", "title": "", "text": text} for i, text in enumerate(SENTENCES)]
    queries = queries or [{"_id": "q0", "text": "yaml parser for python"}, {"_id": "q1", "text": "convert images"}]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus_rows))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


def test_results_json_records_everything_that_affects_the_numbers(tmp_path, registry):
    folder = beir_folder(tmp_path)
    records = run_beir_eval([str(folder)], ["tiny", "bm25"], output=tmp_path / "results", registry=registry)
    assert [(r.dataset, r.model) for r in records] == [("tinybeir", "tiny"), ("tinybeir", "bm25")]
    stored = json.loads((tmp_path / "results" / "tinybeir" / "tiny.json").read_text())
    retriever = stored["retriever"]
    assert retriever["fingerprint"] == registry.get("tiny").fingerprint
    assert retriever["prompts"]["query"].endswith("\u201c") and retriever["num_compress_tokens"] == 3
    assert retriever["dtype"] == "float32" and retriever["max_length"] == 160 and retriever["pooling"] == "compress-mean"
    assert retriever["index_type"] == "flat" and retriever["batch_size"] == 16
    assert stored["top_k"] == 100 and stored["split"] == "test" and stored["queries"] == 2
    assert len(stored["dataset_fingerprint"]) == 64 and stored["toolkit_version"]
    assert stored["seconds"]["total"] >= 0 and stored["ignore_identical_ids"] is True and stored["identical_ids_dropped"] == 0
    assert 0 <= stored["metrics"]["NDCG@10"] <= 1
    bm25 = json.loads((tmp_path / "results" / "tinybeir" / "bm25.json").read_text())
    assert bm25["retriever"]["k1"] == 1.5 and bm25["metrics"]["MRR@10"] == 1.0  # both queries share words with their docs
    table = markdown_table(records)
    assert table.splitlines()[0] == "| model | tinybeir |" and "| bm25 | 1.0000 |" in table
    assert bar_chart(records, tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_two_folders_of_one_name_keep_their_results_apart(tmp_path, registry):
    """a/dev and b/dev in one run: a column and a results folder each, not one overwriting the other."""
    first, second = beir_folder(tmp_path / "a"), beir_folder(tmp_path / "b")
    records = run_beir_eval([str(first), str(second)], ["bm25"], output=tmp_path / "results", registry=registry)
    assert [r.dataset for r in records] == ["a-tinybeir", "b-tinybeir"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a-tinybeir", "b-tinybeir"]


def test_second_run_reuses_the_encoded_corpus(tmp_path, registry, monkeypatch):
    folder = beir_folder(tmp_path)
    first = run_beir_eval([str(folder)], ["tiny"], output=tmp_path / "r1", registry=registry)
    monkeypatch.setattr(EncodeJob, "encode", lambda *a, **k: pytest.fail("the corpus was encoded again"))
    second = run_beir_eval([str(folder)], ["tiny"], output=tmp_path / "r2", registry=registry)
    assert first[0].metrics == second[0].metrics


def test_identical_ids_are_dropped_by_default_whatever_the_set_is_called(tmp_path, registry):
    rows = [{"_id": "q0", "title": "", "text": "yaml parser for python"}] + [
        {"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(SENTENCES)
    ]
    folder = beir_folder(tmp_path, corpus_rows=rows)  # query q0 is also a document, under its own id
    kept = run_beir_eval([str(folder)], ["bm25"], output=tmp_path / "r", registry=registry, ignore_identical_ids=False)
    dropped = run_beir_eval([str(folder)], ["bm25"], output=tmp_path / "r", registry=registry)
    assert dropped[0].payload["ignore_identical_ids"] is True and kept[0].payload["ignore_identical_ids"] is False
    assert dropped[0].payload["identical_ids_dropped"] == 1 and kept[0].payload["identical_ids_dropped"] == 0
    assert dropped[0].metrics["MRR@10"] > kept[0].metrics["MRR@10"]


def test_dropping_identical_ids_keeps_the_cut_off_full():
    from arretrieve.evaluation.beir_eval import drop_identical_ids

    results = {"q1": {"q1": 0.9, "a": 0.8, "b": 0.7}, "q2": {"a": 0.5, "b": 0.4, "c": 0.3}}
    kept, dropped = drop_identical_ids(results, top_k=2)
    assert kept == {"q1": {"a": 0.8, "b": 0.7}, "q2": {"a": 0.5, "b": 0.4}} and dropped == 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qrels": "q0\tmissing-doc\t1\n"}, "document ids missing from the corpus"),
        ({"qrels": "q9\td0\t1\n"}, "query ids missing from queries.jsonl"),
        ({"qrels": "q0\td0\n"}, r"test.tsv:2: expected query-id<TAB>corpus-id<TAB>score"),
        ({"queries": [{"_id": "q0", "text": " "}]}, r"queries.jsonl:1: query 'q0' is empty"),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path, change, message):
    with pytest.raises(ArrError, match=message):
        load_dataset(str(beir_folder(tmp_path, **change)))


def test_missing_files_and_unknown_names(tmp_path, registry):
    folder = beir_folder(tmp_path)
    with pytest.raises(ArrError, match="dev.tsv does not exist"):
        load_dataset(str(folder), split="dev")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(ArrError, match="queries.jsonl is missing"):
        load_dataset(str(folder))
    with pytest.raises(ArrError, match="neither a folder nor a BEIR dataset name"):
        load_dataset("not-a-dataset")
    with pytest.raises(ArrError, match="no model named"):
        run_beir_eval([str(folder)], ["nope"], registry=registry)
    with pytest.raises(ArrError, match="top-k"):
        run_beir_eval([str(folder)], ["bm25"], top_k=10, registry=registry)


def test_offline_download_says_to_pass_a_folder(monkeypatch):
    import urllib.error
    import urllib.request

    def no_network(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ArrError, match="cannot download the BEIR dataset 'scifact'.*pass the folder"):
        load_dataset("scifact")


def test_a_beir_name_is_downloaded_once_and_a_bad_archive_leaves_nothing(tmp_path, monkeypatch):
    import zipfile

    from arretrieve.evaluation import beir_data
    from arretrieve.home import beir_cache_dir

    folder = beir_folder(tmp_path)
    archive = tmp_path / "scifact.zip"
    with zipfile.ZipFile(archive, "w") as packed:
        for file in folder.rglob("*"):
            if file.is_file():
                packed.write(file, "scifact/" + file.relative_to(folder).as_posix())
    monkeypatch.setattr(beir_data, "BEIR_URL", tmp_path.as_uri() + "/{name}.zip")
    (tmp_path / "nfcorpus.zip").write_bytes(b"not a zip")
    with pytest.raises(ArrError, match="cannot download the BEIR dataset 'nfcorpus' \\(BadZipFile\\)"):
        load_dataset("nfcorpus")
    assert not (beir_cache_dir() / "nfcorpus").exists() and not list(beir_cache_dir().glob(".*"))
    dataset = load_dataset("scifact")
    assert dataset.folder == beir_cache_dir() / "scifact" and dataset.qrels == {"q0": {"d0": 1}, "q1": {"d1": 1}}
    archive.unlink()  # the second time it comes from the cache
    assert load_dataset("scifact").fingerprint == dataset.fingerprint
