import gzip
import json

import pytest

from arretrieve.corpus import Chunking, CorpusSource, FieldNames
from arretrieve.errors import ArrError
from arretrieve.corpus.queries import read_queries

ROWS = [{"_id": "a", "title": "T", "text": "first text"}, {"_id": "b", "title": "", "text": "second text"}]


def _ids(source):
    return [d.id for d in source.documents()]


def test_beir_folder_and_jsonl_gz(tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    source = CorpusSource(folder)
    assert _ids(source) == ["a", "b"]
    assert next(source.documents()).full_text == "T\nfirst text"
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in ROWS)
    assert _ids(CorpusSource(gz)) == ["a", "b"]


def test_csv_tsv_json_parquet_with_custom_fields(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"doc": ["x1", "x2"], "body": ["alpha beta", "gamma"], "heading": ["H", ""]})
    fields = FieldNames(id="doc", text="body", title="heading")
    frame.to_csv(tmp_path / "c.csv", index=False)
    frame.to_csv(tmp_path / "c.tsv", index=False, sep="\t")
    frame.to_json(tmp_path / "c.json", orient="records")
    frame.to_parquet(tmp_path / "c.parquet")
    for name in ("c.csv", "c.tsv", "c.json", "c.parquet"):
        documents = list(CorpusSource(tmp_path / name, fields).documents())
        assert [(d.id, d.title, d.text) for d in documents] == [("x1", "H", "alpha beta"), ("x2", "", "gamma")], name


def test_csv_errors_name_the_line(tmp_path):
    (tmp_path / "c.csv").write_text("doc,body\nx1,alpha\nx1,beta\n")
    with pytest.raises(ArrError, match=r"c.csv line 3: duplicate id 'x1' \(first at .*c.csv line 2\)"):
        CorpusSource(tmp_path / "c.csv", FieldNames(id="doc", text="body")).scan()


def test_folder_of_text_files(tmp_path):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "one.txt").write_text("plain text")
    (tmp_path / "docs" / "sub" / "two.md").write_text("# heading\nmarkdown")
    (tmp_path / "docs" / "ignored.bin").write_bytes(b"\0")
    documents = list(CorpusSource(tmp_path / "docs").documents())
    assert [d.id for d in documents] == ["one.txt", "sub/two.md"]
    (tmp_path / "docs" / "bad.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ArrError, match=r"bad.txt: not valid UTF-8"):
        CorpusSource(tmp_path / "docs").scan()


@pytest.mark.parametrize(
    "lines, message, reason",
    [
        (['{"_id": "a", "text": "x"}', "{broken"], r"corpus.jsonl:2: malformed JSON", "malformed JSON"),
        (['{"_id": "a", "text": "x"}', '{"_id": "a", "text": "y"}'], r"corpus.jsonl:2: duplicate id 'a' \(first at .*corpus.jsonl:1\)", "duplicate id"),
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": "  "}'], r"corpus.jsonl:2: document 'b' has no text", "empty text"),
        (['{"_id": "a", "text": "x"}', '{"text": "x"}'], r"corpus.jsonl:2: missing field '_id'", "missing field"),
        (['{"_id": "a", "text": "x"}', '{"_id": "b", "text": ["x"]}'], r"corpus.jsonl:2: field 'text' must be a string", "wrong type"),
        (['{"_id": "a", "text": "x"}', "[1, 2]"], r"corpus.jsonl:2: expected a JSON object", "expected a JSON object"),
    ],
)
def test_bad_rows_are_errors_or_skipped_and_counted(tmp_path, lines, message, reason):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ArrError, match=message):
        CorpusSource(path).scan()
    skipping = CorpusSource(path, skip_invalid=True)
    scan = skipping.scan()
    assert scan.documents == 1 and scan.skipped == {reason: 1}
    assert _ids(skipping) == ["a"]
    assert "skipped 1 rows" in scan.summary()


def test_invalid_utf8_line_is_named(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n')
    with pytest.raises(ArrError, match=r"corpus.jsonl:2: not valid UTF-8"):
        CorpusSource(path).scan()


def test_empty_corpus_and_unknown_format(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("\n")
    with pytest.raises(ArrError, match="no usable documents"):
        CorpusSource(tmp_path / "corpus.jsonl").scan()
    (tmp_path / "x.docx").write_text("?")
    with pytest.raises(ArrError, match="unsupported corpus format"):
        CorpusSource(tmp_path / "x.docx")


def test_chunking_ids_and_overlap():
    from arretrieve.corpus import Document

    chunks = list(Chunking(words=4, overlap=1).split(Document("doc", "T", "w1 w2 w3 w4 w5 w6 w7 w8 w9")))
    assert [c.id for c in chunks] == ["doc#0", "doc#1", "doc#2"]
    assert [c.text for c in chunks] == ["w1 w2 w3 w4", "w4 w5 w6 w7", "w7 w8 w9"]
    assert all(c.parent == "doc" and c.doc_id == "doc" and c.title == "T" for c in chunks)
    assert [c.id for c in Chunking(words=10).split(Document("short", "", "a b"))] == ["short#0"]
    with pytest.raises(ArrError):
        Chunking(words=3, overlap=3)


def test_chunked_scan_counts_chunks(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"_id": "a", "text": " ".join(["w"] * 10)}) + "\n")
    scan = CorpusSource(path, chunking=Chunking(4, 0)).scan()
    assert scan.documents == 1 and scan.chunks == 3


def test_fingerprint_changes_with_content_and_options(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    first = CorpusSource(path).fingerprint()
    assert CorpusSource(path, chunking=Chunking(5)).fingerprint() != first
    path.write_text(json.dumps(ROWS[0]) + "\n")
    assert CorpusSource(path).fingerprint() != first


def test_queries_jsonl_and_tsv(tmp_path):
    (tmp_path / "q.jsonl").write_text('{"_id": "q1", "text": "yaml"}\n{"_id": "q2", "text": "fonts"}\n')
    assert read_queries(tmp_path / "q.jsonl") == {"q1": "yaml", "q2": "fonts"}
    (tmp_path / "q.tsv").write_text("q1\tyaml parser\nq2\tfonts\n")
    assert read_queries(tmp_path / "q.tsv") == {"q1": "yaml parser", "q2": "fonts"}
    (tmp_path / "bad.tsv").write_text("q1\tyaml\nq2\t \n")
    with pytest.raises(ArrError, match=r"bad.tsv:2: query 'q2' is empty"):
        read_queries(tmp_path / "bad.tsv")
    (tmp_path / "dup.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n')
    with pytest.raises(ArrError, match=r"dup.jsonl:2: duplicate query id 'q1'"):
        read_queries(tmp_path / "dup.jsonl")


def test_a_corpus_whose_fields_have_other_names_gets_the_flag_that_fixes_it(tmp_path, registry):
    """Rows {"id", "body"}: the error names the row's fields and the flag, not --skip-invalid
    (which would skip every row); the API takes the same names."""
    import arretrieve
    from arretrieve.corpus import CorpusSource
    from arretrieve.errors import ArrError

    corpus = tmp_path / "notes.jsonl"
    corpus.write_text('{"id": "a", "body": "yaml parser"}\n{"id": "b", "body": "image tools"}\n')
    with pytest.raises(ArrError) as caught:
        CorpusSource(corpus).scan()
    message = str(caught.value)
    assert "notes.jsonl:1: missing field '_id'" in message and "--id-field id" in message
    assert "'id', 'body'" in message and "skip-invalid" not in message
    with pytest.raises(ArrError, match="--text-field body"):
        CorpusSource(corpus, FieldNames(id="id")).scan()
    with pytest.raises(ArrError, match="holds no usable documents.*--id-field id"):
        CorpusSource(corpus, skip_invalid=True).scan()
    index = arretrieve.Index.build(corpus, name="notes", id_field="id", text_field="body", registry=registry,
                                   index_dir=tmp_path / "ix")
    assert index.search("yaml parser", k=1)[0].id == "a"
    second = tmp_path / "mixed.jsonl"
    second.write_text('{"_id": "a", "text": "fine"}\n{"text": "no id"}\n')
    with pytest.raises(ArrError, match=r"mixed.jsonl:2: missing field '_id' \(pass --skip-invalid"):
        CorpusSource(second).scan()
