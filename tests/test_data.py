"""`arr data debian-desc`: the Debian description set built from apt lists (tiny lists made here)."""

import gzip
import json

import pytest
from typer.testing import CliRunner

from arretrieve.cli.app import app
from arretrieve.data.debian_desc import build_debian_desc, clean_long_description, find_apt_lists, is_generic_query
from arretrieve.errors import ArrError
from arretrieve.evaluation.beir_data import load_dataset

WORDS = ("parser", "image", "network", "audio", "editor", "compiler", "database", "font", "game", "shell",
         "crypto", "kernel", "printer", "camera", "mail", "music", "video", "cloud", "graph", "math")


def _lists(folder, count=120):
    """A Translation-en, a Packages file and an InRelease for bookworm/main: `count` packages whose
    descriptions are kept (every 10th with a generic short description, which is no query), one
    too short to keep and one alone in its section."""
    folder.mkdir(parents=True, exist_ok=True)
    translation, packages = [], []
    for i in range(count):
        name = f"pkg{i:03d}"
        topic, other = WORDS[i % len(WORDS)], WORDS[(i * 7 + 3) % len(WORDS)]
        short = f"{topic} {other} tool number {i}" if i % 10 else "transitional dummy package"
        body = (f" The {topic} toolkit {i} reads {other} files and writes reports about them for people who"
                f" maintain {topic} systems every day.\n .\n  * fast {other} handling\n  * plain {topic} output")
        translation.append(f"Package: {name}\nDescription-md5: {i:032x}\nDescription-en: {short}\n{body}\n")
        packages.append(f"Package: {name}\nSource: src{i // 2:03d}\nSection: {'utils' if i % 3 else 'net'}\nVersion: 1.0\n")
    translation.append("Package: tiny\nDescription-md5: 0\nDescription-en: a tiny tool\n Too short to keep.\n")
    packages.append("Package: tiny\nSection: utils\n")
    translation.append("Package: solo\nDescription-md5: 1\nDescription-en: solo editor for notes\n"
                       " A small editor of plain notes with search, tags and a calendar view for people who write daily.\n")
    packages.append("Package: solo\nSection: editors\n")
    prefix = "example.org_debian_dists_bookworm"
    (folder / f"{prefix}_main_i18n_Translation-en").write_text("\n".join(translation), encoding="utf-8")
    with gzip.open(folder / f"{prefix}_main_binary-amd64_Packages.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(packages))
    (folder / f"{prefix}_InRelease").write_text("Origin: Debian\nSuite: oldstable\nVersion: 12.99\nCodename: bookworm\n"
                                                "Description: a test release\nSHA256:\n", encoding="utf-8")
    return folder


def test_the_set_is_deterministic_well_formed_and_split_without_leaks(tmp_path):
    lists = find_apt_lists(_lists(tmp_path / "lists"))
    first = build_debian_desc(tmp_path / "a", lists)
    second = build_debian_desc(tmp_path / "b", lists)
    assert (tmp_path / "a" / "SHA256SUMS").read_bytes() == (tmp_path / "b" / "SHA256SUMS").read_bytes()
    assert not first.matches_reference and first.differing  # not Debian 12.15's lists
    assert first.release["Version"] == "12.99" and second.counts == first.counts
    meta = [json.loads(line) for line in (tmp_path / "a" / "meta" / "docs.jsonl").read_text().splitlines()]
    assert len(meta) == 121  # every description but the one too short to keep
    queries = [json.loads(line) for line in (tmp_path / "a" / "meta" / "queries.jsonl").read_text().splitlines()]
    assert all(q["generic"] and not q["in_beir"] for q in queries if "dummy" in q["text"])
    split_of_cluster = {}
    for doc in meta:
        assert split_of_cluster.setdefault(doc["cluster"], doc["split"]) == doc["split"]
    for split in ("dev", "test"):
        if first.counts[split]["queries"]:
            dataset = load_dataset(str(tmp_path / "a" / split), split)
            texts = {d.id: d.full_text for d in dataset.corpus.documents()}
            for query_id, relevant in dataset.qrels.items():
                assert all(dataset.queries[query_id].lower() not in texts[d].lower() for d in relevant)
    rows = [json.loads(line) for line in (tmp_path / "a" / "train" / "triplets.jsonl").read_text().splitlines()]
    assert rows and all(row["pos"] not in row["neg"] and len(row["neg"]) == 2 for row in rows)


def test_cleaning_and_generic_queries():
    assert clean_long_description([" First line", " goes on.", " .", "  * one", "  * two"]) == "First line goes on.\n\n* one\n* two"
    assert is_generic_query("transitional dummy package") and is_generic_query("Python 3 module")
    assert not is_generic_query("YAML parser and emitter")


def test_refusals_are_one_line(tmp_path):
    with pytest.raises(ArrError, match="expected one Translation-en"):
        find_apt_lists(tmp_path)
    lists = find_apt_lists(_lists(tmp_path / "lists"))
    build_debian_desc(tmp_path / "out", lists)
    with pytest.raises(ArrError, match="already exists"):
        build_debian_desc(tmp_path / "out", lists)
    sums = (tmp_path / "out" / "SHA256SUMS").read_bytes()
    assert build_debian_desc(tmp_path / "out", lists, overwrite=True).checksums.read_bytes() == sums


def test_cli(tmp_path):
    lists = _lists(tmp_path / "lists")
    result = CliRunner().invoke(app, ["data", "debian-desc", str(tmp_path / "out"), "--lists-dir", str(lists)])
    assert result.exit_code == 0, result.output
    assert "files differ from the reference set" in result.output and (tmp_path / "out" / "provenance.json").is_file()
