"""Every file arretrieve reads is treated as hostile.

The security holes, reproduced (they must stay closed):
  - an imported model folder or `--from-json` entry that asks for `trust_remote_code` with a config
    mapping to a module of its own: refused without the flag, and the module never runs;
  - an index manifest whose `files` point outside the index (`../../victim.txt`): refused, the
    victim stays intact, for `--add` and for search;
  - rich markup (`[/oops]`) and control characters in ids and titles: printed as text.
Silent data loss, closed: CSV/TSV cells are text exactly as written ("NA", "null", "") and a row
with the wrong number of cells is an error naming its line; weights are verified by content
(restoring a file's mtime after editing it is detected; an entry without a hash is hashed at
import); concurrent registry adds of one name: exactly one wins; a UTF-8 byte order mark is read.

The fuzz part damages each kind of file the toolkit reads (truncated, garbage bytes, wrong JSON
types, missing keys, hostile paths) and asserts a one-line `ArrError` or a counted skip, never
another exception, never a write outside the toolkit's folders:
  corpora (jsonl, jsonl.gz, csv, tsv), queries (jsonl, tsv), qrels, index manifests, docstore
  offsets, registry entries, exported model folders (entry.json), training config files, training
  data rows, the hash cache, the reference-score cache.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from arretrieve.corpus import CorpusSource
from arretrieve.errors import ArrError
from arretrieve.index import IndexManifest, IndexSpec, IndexStore, Searcher, add_to_index, build_index
from arretrieve.registry import Registry
from conftest import SENTENCES, tiny_entry, write_beir_corpus

ROWS = [{"_id": f"d{i}", "title": "", "text": s} for i, s in enumerate(SENTENCES)]


@pytest.fixture
def built(tmp_path, registry):
    store = IndexStore(tmp_path / "indexes")
    build_index(write_beir_corpus(tmp_path / "c", ROWS), name="idx", model="tiny", spec=IndexSpec("flat"), store=store,
                registry=registry)
    return store


def _exported_folder_with_remote_code(tmp_path, tiny_llama_dir, marker):
    """An exported-model folder whose entry asks for remote code that would write `marker`."""
    import shutil

    folder = tmp_path / "evil"
    shutil.copytree(tiny_llama_dir, folder / "weights")
    (folder / "weights" / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "weights" / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil_module.EvilConfig"}
    (folder / "weights" / "config.json").write_text(json.dumps(config))
    entry = tiny_entry(tiny_llama_dir, name="evil", weights="full", weights_path="weights").to_dict()
    entry.update(trust_remote_code=True, weights_sha256=None)
    entry.pop("builtin")
    (folder / "entry.json").write_text(json.dumps(entry))
    return folder


# --------------------------------------------------------------------------- remote code
def test_imported_entry_cannot_grant_itself_remote_code(tmp_path, tiny_llama_dir):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    marker = tmp_path / "ran.txt"
    folder = _exported_folder_with_remote_code(tmp_path, tiny_llama_dir, marker)
    result = CliRunner().invoke(app, ["models", "import", str(folder)])
    assert isinstance(result.exception, ArrError)
    assert "asks to run the model's own Python code" in str(result.exception)
    assert "evil_module.EvilConfig" in str(result.exception) and "--trust-remote-code" in str(result.exception)
    assert "evil" not in Registry().names() and not marker.exists()
    granted = CliRunner().invoke(app, ["models", "import", str(folder), "--trust-remote-code"])
    assert granted.exit_code == 0, granted.output
    entry = Registry().get("evil")
    assert entry.trust_remote_code is True and entry.weights_sha256  # hashed at import, as it recorded none
    assert not marker.exists()  # granting registers; nothing ran yet


def test_from_json_cannot_grant_remote_code(tmp_path, tiny_llama_dir):
    from arretrieve.registry.new_entry import new_entry

    overrides = {"trust_remote_code": True}
    with pytest.raises(ArrError, match="--from-json fields asks to run the model's own Python code"):
        new_entry("sneaky", base=str(tiny_llama_dir), overrides=overrides)
    assert new_entry("granted", base=str(tiny_llama_dir), overrides=overrides, trust_remote_code=True).trust_remote_code


def test_a_base_needing_custom_code_is_one_line(tmp_path, tiny_llama_dir):
    import shutil

    from arretrieve.registry.new_entry import new_entry

    folder = tmp_path / "custom"
    shutil.copytree(tiny_llama_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="mystery-model", auto_map={"AutoConfig": "mystery.MysteryConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArrError, match=r"needs its own Python code to load .* --trust-remote-code") as caught:
        new_entry("custom", base=str(folder))
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- manifest paths
@pytest.mark.parametrize("key, value", [("vectors", "../../victim.txt"), ("index", "/etc/passwd"), ("offsets", "sub/x.npy"),
                                        ("index", ".."), ("vectors", 3)])
def test_manifest_paths_outside_the_index_are_refused(tmp_path, registry, built, key, value):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = built.path("idx")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    more = write_beir_corpus(tmp_path / "more", [{"_id": "new", "title": "", "text": "a new document"}])
    with pytest.raises(ArrError, match=r"is not a file name inside the index folder"):
        add_to_index(more, name="idx", store=built, registry=registry)
    with pytest.raises(ArrError, match=r"is not a file name inside the index folder"):
        Searcher(folder, registry=registry)
    assert victim.read_text() == "precious"


# --------------------------------------------------------------------------- markup and control characters
def test_markup_and_control_characters_in_ids_print_as_text(tmp_path, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    rows = [{"_id": "[/oops]", "title": "[bold red]title[/]", "text": "yaml parser [link=http://x]click[/link]"},
            {"_id": "esc\x1b[31mred", "title": "", "text": "fonts for the desktop \x07 bell"}]
    build_index(write_beir_corpus(tmp_path / "c", rows), name="marked", model="tiny", spec=IndexSpec("flat"),
                store=IndexStore(tmp_path / "ix"), registry=registry)
    result = CliRunner().invoke(app, ["search", "yaml parser", "--index", "marked", "--index-dir", str(tmp_path / "ix")])
    assert result.exit_code == 0, result.output
    assert "[/oops]" in result.output and "[bold red]title[/]" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    as_json = CliRunner().invoke(app, ["search", "fonts", "--index", "marked", "--index-dir", str(tmp_path / "ix"), "--json"])
    assert {hit["id"] for hit in json.loads(as_json.output)} == {"[/oops]", "esc\x1b[31mred"}  # JSON keeps data exact


# --------------------------------------------------------------------------- CSV/TSV as written
@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_delimited_cells_are_text_exactly_as_written(tmp_path, suffix, sep):
    path = tmp_path / f"c{suffix}"
    path.write_text(sep.join(["_id", "title", "text"]) + "\n" + "\n".join(
        sep.join(cells) for cells in [["a", "NA", "null"], ["b", "", "NaN"], ["c", "None", "N/A"], ["007", "t", "0012"]]) + "\n")
    docs = {d.id: (d.title, d.text) for d in CorpusSource(path).documents()}
    assert docs == {"a": ("NA", "null"), "b": ("", "NaN"), "c": ("None", "N/A"), "007": ("t", "0012")}


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_row_with_the_wrong_cell_count_names_its_line(tmp_path, suffix, sep):
    path = tmp_path / f"c{suffix}"
    path.write_text(f"_id{sep}title{sep}text\na{sep}t{sep}fine\nshort{sep}only title\nb{sep}t{sep}x{sep}extra\n")
    with pytest.raises(ArrError, match=rf"c\{suffix} line 3: expected 3 columns \(_id, title, text\), found 2"):
        CorpusSource(path).scan()
    scan = CorpusSource(path, skip_invalid=True).scan()
    assert scan.documents == 1 and scan.skipped["expected 3 columns"] == 2


def test_quoted_newlines_keep_line_numbers_right(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('_id,text\na,"two\nlines"\nb\n')
    with pytest.raises(ArrError, match=r"c.csv line 4: expected 2 columns"):
        CorpusSource(path).scan()


# --------------------------------------------------------------------------- weights verified by content
def test_an_edit_with_the_mtime_restored_is_detected(tmp_path):
    from arretrieve.modeling.backbone import verified_sha256

    folder = tmp_path / "weights"
    folder.mkdir()
    target = folder / "adapter_model.safetensors"
    target.write_bytes(b"0123456789" * 100)
    before = verified_sha256(folder)
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[10:12] = b"XY"  # same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the mtime put back
    assert verified_sha256(folder) != before


# --------------------------------------------------------------------------- concurrency, BOM
def test_concurrent_adds_of_one_name_let_exactly_one_win(tiny_llama_dir):
    outcomes = []

    def add(i):
        try:
            Registry().add(tiny_entry(tiny_llama_dir, name="race", max_length=100 + i))
            outcomes.append("added")
        except ArrError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] + ["refused"] * 7


def test_a_byte_order_mark_is_read(tmp_path):
    from arretrieve.evaluation.beir_data import load_dataset

    folder = tmp_path / "bom"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_bytes("\ufeff".encode() + b'{"_id": "d0", "text": "hello"}\n')
    (folder / "queries.jsonl").write_bytes("\ufeff".encode() + b'{"_id": "q0", "text": "hi"}\n')
    (folder / "qrels" / "test.tsv").write_bytes("\ufeff".encode() + b"query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    dataset = load_dataset(str(folder))
    assert dataset.queries == {"q0": "hi"} and dataset.qrels == {"q0": {"d0": 1}}
    csv_path = tmp_path / "c.csv"
    csv_path.write_bytes("\ufeff".encode() + b"_id,text\nx,y\n")
    assert [d.id for d in CorpusSource(csv_path).documents()] == ["x"]


# --------------------------------------------------------------------------- fuzz: damaged files
DAMAGES = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: bytes(range(256)) * 4,
    "empty": lambda data: b"",
    "not an object": lambda data: b"[1, 2, 3]\n",
    "wrong types": lambda data: _wrong_types(data),
}


def _wrong_types(data: bytes) -> bytes:
    """Every value of every JSON object (one per line, or the whole file) replaced by a list."""
    def retype(text: str) -> str:
        try:
            payload = json.loads(text)
        except ValueError:
            return text
        return json.dumps({k: [] for k in payload}) if isinstance(payload, dict) else text

    text = data.decode("utf-8", "replace")
    try:
        json.loads(text)
        return retype(text).encode()
    except ValueError:
        return "\n".join(retype(line) for line in text.splitlines()).encode()


def _damage(path, how):
    path.write_bytes(DAMAGES[how](path.read_bytes()))


@pytest.mark.parametrize("how", list(DAMAGES))
def test_damaged_corpora_give_one_line_errors(tmp_path, how):
    for name, writer in (("c.jsonl", lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))),
                         ("c.csv", lambda p: p.write_text("_id,text\n" + "".join(f"{r['_id']},{r['text']}\n" for r in ROWS))),
                         ("c.tsv", lambda p: p.write_text("_id\ttext\n" + "".join(f"{r['_id']}\t{r['text']}\n" for r in ROWS)))):
        path = tmp_path / name
        writer(path)
        _damage(path, how)
        try:
            scan = CorpusSource(path, skip_invalid=True).scan()
        except ArrError as exc:
            assert "\n" not in str(exc)
            continue
        assert scan.documents >= 1  # what was read is counted, what was not is a counted skip


def test_truncated_gzip_corpus_is_one_line(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS * 50).encode())[:200])
    with pytest.raises(ArrError) as caught:
        CorpusSource(path).scan()
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("how", list(DAMAGES))
@pytest.mark.parametrize("which", ["queries.jsonl", "qrels/test.tsv"])
def test_damaged_beir_files_give_one_line_errors(tmp_path, how, which):
    from arretrieve.evaluation.beir_data import load_dataset

    folder = write_beir_corpus(tmp_path / "set", ROWS)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": "query"}) + "\n" for i in range(6)))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(6)))
    _damage(folder / which, how)
    try:
        load_dataset(str(folder))
    except ArrError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("how", list(DAMAGES) + ["missing keys", "hostile name"])
def test_damaged_manifests_give_one_line_errors(tmp_path, registry, built, how):
    path = built.path("idx") / "manifest.json"
    if how == "missing keys":
        manifest = json.loads(path.read_text())
        del manifest["files"], manifest["count"]
        path.write_text(json.dumps(manifest))
    elif how == "hostile name":
        manifest = json.loads(path.read_text())
        manifest["files"]["offsets"] = "../../../../tmp/x.npy"
        path.write_text(json.dumps(manifest))
    else:
        _damage(path, how)
    with pytest.raises(ArrError) as caught:
        Searcher(built.path("idx"), registry=registry)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_docstore_offsets_give_one_line_errors(tmp_path, registry, built, how):
    folder = built.path("idx")
    offsets = folder / IndexManifest.load(folder).files["offsets"]
    _damage(offsets, how)
    with pytest.raises(ArrError) as caught:
        Searcher(folder, registry=registry).search(["yaml"], k=2)
    assert "\n" not in str(caught.value)


def test_pickled_offsets_are_refused(tmp_path, registry, built):
    folder = built.path("idx")
    offsets = folder / IndexManifest.load(folder).files["offsets"]
    np.save(offsets, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArrError):
        Searcher(folder, registry=registry).search(["yaml"], k=2)


@pytest.mark.parametrize("how", list(DAMAGES) + ["missing keys", "bad name"])
def test_damaged_registry_entries_give_one_line_errors(tiny_llama_dir, registry, how):
    path = Registry().entries_dir / "tiny.json"
    if how == "missing keys":
        path.write_text(json.dumps({"name": "tiny"}))
    elif how == "bad name":
        payload = json.loads(path.read_text())
        payload["name"] = "../../etc"
        path.write_text(json.dumps(payload))
    else:
        _damage(path, how)
    with pytest.raises(ArrError) as caught:
        Registry().get("tiny")
    assert "\n" not in str(caught.value)


def test_a_broken_registry_entry_hides_no_other_model_and_can_be_removed(tiny_llama_dir, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    (Registry().entries_dir / "broken.json").write_text('{"name": "broken",')
    entries, broken = Registry().scan()
    assert "tiny" in [e.name for e in entries] and [name for name, _ in broken] == ["broken"]
    listed = CliRunner().invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "tiny" in listed.output and "broken cannot be read" in listed.output
    assert Registry().get("tiny").name == "tiny"  # resolving another model is untouched
    removed = CliRunner().invoke(app, ["models", "remove", "broken"])
    assert removed.exit_code == 0 and "broken" not in Registry().names()


@pytest.mark.parametrize("field", ["document", "query"])
def test_ids_a_trec_run_cannot_hold_are_refused_before_anything_is_written(tmp_path, field):
    from arretrieve.evaluation.run_file import write_trec_run
    from arretrieve.index.searcher import Hit

    query_id, doc_id = ("q 1", "d1") if field == "query" else ("q1", "tab\there")
    path = tmp_path / "run.trec"
    with pytest.raises(ArrError, match=f"{field} id .* whitespace") as caught:
        write_trec_run({query_id: [Hit(1, 1.0, doc_id, "", "")]}, path, tag="arr-x")
    assert "\n" not in str(caught.value) and not path.exists()


@pytest.mark.parametrize("how", list(DAMAGES) + ["hostile name"])
def test_damaged_exported_entries_give_one_line_errors(tmp_path, tiny_llama_dir, how):
    from arretrieve.registry.model_folder import import_model_folder

    folder = tmp_path / "export"
    (folder / "weights").mkdir(parents=True)
    payload = tiny_entry(tiny_llama_dir, name="x", weights="adapter", weights_path="weights").to_dict()
    payload.pop("builtin")
    (folder / "entry.json").write_text(json.dumps(payload))
    if how == "hostile name":
        (folder / "entry.json").write_text(json.dumps({**payload, "name": "../evil"}))
    else:
        _damage(folder / "entry.json", how)
    with pytest.raises(ArrError) as caught:
        import_model_folder(folder)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("suffix", [".json", ".toml", ".yaml"])
@pytest.mark.parametrize("how", ["truncated", "garbage", "not an object"])
def test_damaged_training_configs_give_one_line_errors(tmp_path, suffix, how):
    from arretrieve.training import read_config_file

    path = tmp_path / f"train{suffix}"
    path.write_text({".json": '{"name": "x", "beta": 0.1}', ".toml": 'name = "x"\nbeta = 0.1\n', ".yaml": "name: x\nbeta: 0.1\n"}[suffix])
    _damage(path, how)
    try:
        read_config_file(path)
    except ArrError as exc:
        assert "\n" not in str(exc)


@pytest.mark.parametrize("how", list(DAMAGES))
def test_damaged_training_rows_give_one_line_errors(tmp_path, how):
    from arretrieve.training.config import FieldMap
    from arretrieve.training.data import load_triplets

    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"query": s, "pos": s, "neg": s[::-1]}) + "\n" for s in SENTENCES))
    _damage(path, how)
    with pytest.raises(ArrError) as caught:
        load_triplets(str(path), FieldMap(), 1)
    assert "\n" not in str(caught.value)


def test_damaged_hash_cache_is_rebuilt_not_trusted(tmp_path, isolated_home):
    from arretrieve.modeling.backbone import verified_sha256
    from arretrieve.hashing import sha256_file

    target = tmp_path / "w.bin"
    target.write_bytes(b"weights")
    verified_sha256(target)
    cache = isolated_home / "cache" / "hashes.json"
    for damage in (b"garbage\xff", b"[]", json.dumps({str(target.resolve()): {"signature": [], "sha256": "0" * 64}}).encode()):
        cache.write_bytes(damage)
        assert verified_sha256(target) == sha256_file(target)


def test_damaged_reference_cache_is_recomputed(tmp_path, registry, isolated_home):
    """A reference-score file of the wrong shape or garbage is not used."""
    from arretrieve.training import TrainConfig, train

    triplets = tmp_path / "t.jsonl"
    triplets.write_text("".join(json.dumps({"query": s, "pos": s[:10], "neg": SENTENCES[(i + 1) % 6][:10]}) + "\n"
                                for i, s in enumerate(SENTENCES)))
    compression = tmp_path / "c.jsonl"
    compression.write_text("".join(json.dumps({"context": s, "instruction": "Sum.", "output": s[:9]}) + "\n" for s in SENTENCES))
    settings = dict(base="tiny", compression_data=str(compression), alignment_data=str(triplets), compress={"max_steps": 1, "batch_size": 2},
                    align={"max_steps": 1, "batch_size": 2}, dtype="float32", lora_r=2, lora_alpha=4,
                    save_steps=100)
    train(TrainConfig(name="first", output_dir=str(tmp_path / "a"), **settings), registry=registry)
    for cached in (isolated_home / "cache" / "reference").glob("*.npy"):
        cached.write_bytes(b"garbage")
    result = train(TrainConfig(name="second", output_dir=str(tmp_path / "b"), **settings), registry=registry)
    assert np.isfinite(result.final_losses["align"])


# --------------------------------------------------------------------------- full disk, per write path
@pytest.fixture
def disk(tmp_path):
    from faults import FullDisk

    disk = FullDisk(tmp_path / "disk")
    yield disk
    disk.free()
    disk.close()


def _one_line_full_disk(caught) -> str:
    message = str(caught.value)
    assert "\n" not in message and ("no space left on device" in message or "a short write" in message), message
    return message


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_full_disk_while_building_an_index_is_one_line_and_leaves_nothing(tmp_path, registry, disk):
    store = IndexStore(disk.path / "indexes")
    disk.fill()
    with pytest.raises(ArrError) as caught:
        build_index(write_beir_corpus(tmp_path / "c", ROWS), name="idx", model="tiny", spec=IndexSpec("flat"),
                    store=store, registry=registry)
    assert "nothing was written" in _one_line_full_disk(caught)
    assert store.names() == [] and [p.name for p in store.root.iterdir() if p.is_dir()] == []


def test_a_full_disk_during_add_leaves_the_index_as_it_was(tmp_path, registry, disk):
    store = IndexStore(disk.path / "indexes")
    build_index(write_beir_corpus(tmp_path / "c", ROWS[:3]), name="idx", model="tiny", spec=IndexSpec("flat"),
                store=store, registry=registry)
    folder = store.path("idx")
    before, hits = _files(folder), Searcher(folder, registry=registry).search(["yaml files"], k=3)
    disk.fill()
    with pytest.raises(ArrError) as caught:
        add_to_index(write_beir_corpus(tmp_path / "more", ROWS[3:]), name="idx", store=store, registry=registry)
    assert "is as it was (3 documents)" in _one_line_full_disk(caught)
    assert _files(folder) == before
    assert Searcher(folder, registry=registry).search(["yaml files"], k=3) == hits
    disk.free()
    assert add_to_index(write_beir_corpus(tmp_path / "more", ROWS[3:]), name="idx", store=store, registry=registry).count == 6


def test_a_full_disk_in_the_encoding_cache_is_one_line_and_trusts_no_partial_shard(tmp_path, tiny_llama_dir, disk,
                                                                                     monkeypatch):
    from arretrieve.home import encoding_cache_dir

    monkeypatch.setenv("ARR_HOME", str(disk.path / "home"))
    Registry().add(tiny_entry(tiny_llama_dir))
    corpus = write_beir_corpus(tmp_path / "c", ROWS)
    disk.fill()
    with pytest.raises(ArrError) as caught:
        build_index(corpus, name="idx", model="tiny", spec=IndexSpec("flat"), store=IndexStore(tmp_path / "ix"))
    _one_line_full_disk(caught)
    assert not [p for p in encoding_cache_dir().rglob("shard-*") if p.is_file()]
    disk.free()
    built = build_index(corpus, name="idx", model="tiny", spec=IndexSpec("flat"), store=IndexStore(tmp_path / "ix"))
    assert built.count == len(ROWS)


def test_a_full_disk_adding_a_registry_entry_is_one_line_and_keeps_the_others(tiny_llama_dir, disk, monkeypatch):
    monkeypatch.setenv("ARR_HOME", str(disk.path / "home"))
    Registry().add(tiny_entry(tiny_llama_dir, name="kept"))
    disk.fill()
    with pytest.raises(ArrError) as caught:
        Registry().add(tiny_entry(tiny_llama_dir, name="new"))
    assert "nothing was written" in _one_line_full_disk(caught)
    disk.free()
    assert "kept" in Registry().names() and "new" not in Registry().names()


def test_a_full_disk_during_an_export_is_one_line_and_leaves_no_folder(tmp_path, tiny_llama_dir, registry, disk):
    from arretrieve.export import export_model
    from arretrieve.training import TrainConfig, train
    from arretrieve.training.config import nest_stage_settings

    triplets = tmp_path / "t.jsonl"
    triplets.write_text("".join(json.dumps({"query": s[:14], "pos": s, "neg": [SENTENCES[(i + 1) % 6]]}) + "\n"
                                for i, s in enumerate(SENTENCES * 2)))
    trained = train(TrainConfig(**nest_stage_settings(dict(
        name="t", base="tiny", objective="contrastive", alignment_data=str(triplets), align_max_steps=1,
        align_batch_size=4, dtype="float32", lora_r=4, lora_alpha=8, output_dir=str(tmp_path / "run")))),
        registry=registry).entry
    disk.fill()
    with pytest.raises(ArrError) as caught:
        export_model(trained, disk.path / "out")
    _one_line_full_disk(caught)
    assert not (disk.path / "out").exists() and [p.name for p in disk.path.iterdir() if p.is_dir()] == []


def test_a_full_disk_while_checkpointing_is_one_line_and_the_run_resumes(tmp_path, registry, disk, monkeypatch):
    from arretrieve.training import TrainConfig, train
    from arretrieve.training import trainer as trainer_module
    from arretrieve.training.config import nest_stage_settings

    triplets = tmp_path / "t.jsonl"
    triplets.write_text("".join(json.dumps({"query": s[:14], "pos": s, "neg": [SENTENCES[(i + 1) % 6]]}) + "\n"
                                for i, s in enumerate(SENTENCES * 2)))
    settings = dict(name="t", base="tiny", objective="contrastive", alignment_data=str(triplets), align_max_steps=2,
                    align_batch_size=4, dtype="float32", lora_r=4, lora_alpha=8, save_steps=1,
                    output_dir=str(disk.path / "run"))
    save_trained = trainer_module.save_trained

    def fill_then_save(*args, **kwargs):
        disk.fill()
        return save_trained(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_trained", fill_then_save)
    with pytest.raises(ArrError) as caught:
        train(TrainConfig(**nest_stage_settings(settings)), registry=registry)
    assert "run again with --resume" in _one_line_full_disk(caught)
    assert not list((disk.path / "run" / "align").glob("checkpoint-*"))  # the half-written one is gone
    monkeypatch.setattr(trainer_module, "save_trained", save_trained)
    disk.free()
    result = train(TrainConfig(**nest_stage_settings({**settings, "resume": True})), registry=registry)
    assert result.steps["align"] == 2


def test_a_full_disk_under_arr_index_add_prints_one_line(tmp_path, tiny_llama_dir, disk):
    import subprocess
    import sys

    if not disk.real:
        pytest.skip("needs a real small filesystem (mounting is not allowed here): a subprocess sees no injection")
    env = {**os.environ, "ARR_HOME": str(tmp_path / "home"), "ARR_INDEXES": str(disk.path / "indexes")}
    arr = [sys.executable, "-c", "import sys; from arretrieve.cli.app import main; sys.argv = ['arr', *sys.argv[1:]]; main()"]
    subprocess.run([*arr, "models", "add", "tiny", "--base", str(tiny_llama_dir), "--k", "3"], env=env, check=True,
                   capture_output=True)
    subprocess.run([*arr, "index", str(write_beir_corpus(tmp_path / "c", ROWS[:3])), "--name", "idx", "--model", "tiny"],
                   env=env, check=True, capture_output=True)
    disk.fill()
    added = subprocess.run([*arr, "index", str(write_beir_corpus(tmp_path / "m", ROWS[3:])), "--name", "idx", "--add"],
                           env=env, capture_output=True, text=True)
    errors = [line for line in added.stderr.splitlines() if line.startswith("error:")]
    assert added.returncode == 1 and "Traceback" not in added.stderr + added.stdout, added.stderr
    assert len(errors) == 1 and "no space left on device" in errors[0] and "is as it was" in errors[0], added.stderr
    assert "close error" not in added.stderr  # nothing from faiss's C writer


# --------------------------------------------------------------------------- model folders that lie
def _adapter_folder(tmp_path, tiny_llama_dir):
    """An exported adapter model: entry.json plus weights/ with a rank-4 adapter and 3 compress rows."""
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "export"
    weights = folder / "weights"
    weights.mkdir(parents=True)
    payload = tiny_entry(tiny_llama_dir, name="lying", weights="adapter", weights_path="weights").to_dict()
    payload.pop("builtin")
    (folder / "entry.json").write_text(json.dumps(payload))
    (weights / "adapter_config.json").write_text(json.dumps({"r": 4, "peft_type": "LORA"}))
    save_file({"q.lora_A.weight": torch.zeros(4, 64), "q.lora_B.weight": torch.zeros(64, 4)},
              str(weights / "adapter_model.safetensors"))
    save_file({"compress_embeddings": torch.zeros(3, 64)}, str(weights / "compress_embeddings.safetensors"))
    return folder


def _header(length: int, tensors: dict) -> bytes:
    raw = json.dumps(tensors).encode()
    return (length if length >= 0 else len(raw)).to_bytes(8, "little") + raw


def _lie(weights, how):
    import struct

    adapter, rows = weights / "adapter_model.safetensors", weights / "compress_embeddings.safetensors"
    f32 = {"dtype": "F32"}
    if how == "header claims a huge tensor":
        adapter.write_bytes(_header(-1, {"a": {**f32, "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}) + b"\0" * 16)
    elif how == "header longer than the file":
        adapter.write_bytes(struct.pack("<Q", 1 << 30) + b"{}")
    elif how == "truncated":
        adapter.write_bytes(adapter.read_bytes()[:-100])
    elif how == "too short":
        adapter.write_bytes(b"\1\2")
    elif how == "overlapping tensors":
        adapter.write_bytes(_header(-1, {"a": {**f32, "shape": [4], "data_offsets": [0, 16]},
                                         "b": {**f32, "shape": [4], "data_offsets": [8, 24]}}) + b"\0" * 24)
    elif how == "shape against bytes":
        adapter.write_bytes(_header(-1, {"a": {**f32, "shape": [5], "data_offsets": [0, 16]}}) + b"\0" * 16)
    elif how == "rank against adapter_config":
        (weights / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    elif how == "compress rows against the entry":
        import torch
        from safetensors.torch import save_file

        save_file({"compress_embeddings": torch.zeros(5, 64)}, str(rows))
    elif how == "binary adapter_config":
        (weights / "adapter_config.json").write_bytes(bytes(range(256)) * 4)
    elif how == "nested config":
        (weights / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    elif how == "huge config":
        (weights / "config.json").write_text(json.dumps({"pad": "x" * (2 << 20)}))
    elif how == "link out of the folder":
        adapter.unlink()
        adapter.symlink_to("/etc/passwd")
    elif how == "link to a device":
        (weights / "config.json").symlink_to("/dev/zero")


LIES = ["header claims a huge tensor", "header longer than the file", "truncated", "too short", "overlapping tensors",
        "shape against bytes", "rank against adapter_config", "compress rows against the entry",
        "binary adapter_config", "nested config", "huge config", "link out of the folder", "link to a device"]


def test_an_honest_adapter_folder_is_imported(tmp_path, tiny_llama_dir):
    from arretrieve.registry.model_folder import import_model_folder

    assert import_model_folder(_adapter_folder(tmp_path, tiny_llama_dir)).weights_sha256


@pytest.mark.parametrize("how", LIES)
def test_a_lying_model_folder_is_refused_at_import_in_one_line(tmp_path, tiny_llama_dir, how):
    from arretrieve.registry.model_folder import import_model_folder

    folder = _adapter_folder(tmp_path, tiny_llama_dir)
    _lie(folder / "weights", how)
    with pytest.raises(ArrError) as caught:
        import_model_folder(folder)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
    if how.startswith("link"):
        assert "outside the model folder" in str(caught.value)


@pytest.mark.parametrize("how", LIES)
def test_a_registered_folder_that_starts_lying_is_refused_at_load_in_one_line(tmp_path, tiny_llama_dir, how):
    from dataclasses import replace

    from arretrieve.registry.model_folder import import_model_folder, weights_folder

    folder = _adapter_folder(tmp_path, tiny_llama_dir)
    entry = replace(import_model_folder(folder), weights_sha256=None)  # nothing to compare: the checks alone
    _lie(folder / "weights", how)
    with pytest.raises(ArrError) as caught:
        weights_folder(entry)
    assert "\n" not in str(caught.value)


BASE_LIES = {  # a base folder the user names: links may leave it (Hugging Face caches), lies may not
    "weights linked to a text file": lambda base: _relink(base / "model.safetensors", "/etc/passwd"),
    "config linked to a device": lambda base: _relink(base / "config.json", "/dev/zero"),
    "shape against bytes": lambda base: (base / "model.safetensors").write_bytes(
        _header(-1, {"a": {"dtype": "F32", "shape": [1 << 30], "data_offsets": [0, 16]}}) + b"\0" * 16),
    "binary config": lambda base: (base / "config.json").write_bytes(bytes(range(256))),
}


def _relink(path, target):
    path.unlink()
    path.symlink_to(target)


def _base_copy(tmp_path, tiny_llama_dir, links: bool = False):
    """A copy of the tiny base; with `links`, its files are links into a folder beside it (how a
    Hugging Face cache snapshot points at its blobs)."""
    import shutil

    base = tmp_path / "base"
    if not links:
        return Path(shutil.copytree(tiny_llama_dir, base))
    blobs = Path(shutil.copytree(tiny_llama_dir, tmp_path / "blobs"))
    base.mkdir()
    for blob in blobs.iterdir():
        (base / blob.name).symlink_to(blob)
    return base


def test_a_base_whose_files_link_to_blobs_outside_it_is_accepted(tmp_path, tiny_llama_dir, registry):
    from arretrieve.encoding import load_embedder
    from arretrieve.registry.new_entry import new_entry

    entry = new_entry("linked", base=_base_copy(tmp_path, tiny_llama_dir, links=True).as_posix(), num_compress_tokens=3)
    assert load_embedder(entry, device="cpu", dtype="float32").encode(["fonts"], role="query").shape == (1, 64)


@pytest.mark.parametrize("how", BASE_LIES)
def test_a_lying_base_folder_is_one_line_when_added_and_when_loaded(tmp_path, tiny_llama_dir, registry, how):
    from dataclasses import replace

    from arretrieve.encoding import load_embedder
    from arretrieve.registry.new_entry import new_entry

    base = _base_copy(tmp_path, tiny_llama_dir)
    entry = replace(new_entry("honest", base=base.as_posix(), num_compress_tokens=3), base_sha256=None)
    BASE_LIES[how](base)
    with pytest.raises(ArrError) as at_add:
        new_entry("lying", base=base.as_posix(), num_compress_tokens=3)
    with pytest.raises(ArrError) as at_load:
        load_embedder(entry, device="cpu", dtype="float32")
    for caught in (at_add, at_load):
        assert "\n" not in str(caught.value) and str(base) in str(caught.value), caught.value


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00garbage", b"GGUF" + bytes(range(256)) * 8,
                                     b"not a gguf file at all"])
def test_a_damaged_gguf_base_is_one_line(tmp_path, content):
    from arretrieve.registry.new_entry import new_entry

    (tmp_path / "base.gguf").write_bytes(content)
    with pytest.raises(ArrError) as caught:
        new_entry("broken", base=str(tmp_path / "base.gguf"))
    assert "\n" not in str(caught.value) and "base.gguf" in str(caught.value)


def test_concurrent_adds_to_one_index_keep_every_document(tmp_path, registry):
    """Two writers of one index: the lock makes the second wait and extend what the first committed."""
    store = IndexStore(tmp_path / "indexes")
    first, second = write_beir_corpus(tmp_path / "a", ROWS[2:4]), write_beir_corpus(tmp_path / "b", ROWS[4:])
    for attempt in range(20):
        build_index(write_beir_corpus(tmp_path / "c", ROWS[:2]), name="idx", model="tiny", spec=IndexSpec("flat"),
                    store=store, registry=registry, overwrite=True)
        errors = []

        def add(corpus):
            try:
                add_to_index(corpus, name="idx", store=store, registry=registry)
            except Exception as exc:  # any failure is the bug this test is for
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(corpus,)) for corpus in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, (attempt, errors)
        searcher = Searcher(store.path("idx"), registry=registry)
        assert sorted(parent for _, parent in searcher.docstore.iter_ids()) == sorted(row["_id"] for row in ROWS), attempt


def test_a_full_disk_caching_a_converted_base_is_one_line_and_leaves_nothing(tiny_llama_dir, disk, monkeypatch):
    """`save_model_folder` is how a GGUF base becomes its safetensors cache (`_convert_gguf`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arretrieve.home import base_cache_dir
    from arretrieve.modeling.backbone import save_model_folder

    monkeypatch.setenv("ARR_HOME", str(disk.path / "home"))
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_llama_dir), AutoTokenizer.from_pretrained(tiny_llama_dir)
    target = base_cache_dir() / "converted"
    disk.fill()
    with pytest.raises(ArrError) as caught:
        save_model_folder(target, model, tokenizer, "arr_source.json", {"gguf": "base.gguf"})
    assert "nothing was written" in _one_line_full_disk(caught)
    assert list(base_cache_dir().iterdir()) == []  # no staging folder either
    disk.free()
    save_model_folder(target, model, tokenizer, "arr_source.json", {"gguf": "base.gguf"})
    assert AutoModelForCausalLM.from_pretrained(target).config.hidden_size == model.config.hidden_size


def test_a_full_disk_only_costs_the_traced_and_hash_caches_a_warning(tiny_llama_dir, disk, monkeypatch, caplog):
    """Both are caches: a search on a full disk still encodes, says why nothing was cached, and
    leaves no partial traced encoder; once there is space the next load caches both."""
    from arretrieve.encoding import load_embedder
    from arretrieve.home import hash_cache_file, traced_cache_dir
    from arretrieve.modeling.traced import TracedEncoder

    monkeypatch.setenv("ARR_HOME", str(disk.path / "home"))
    entry = tiny_entry(tiny_llama_dir)
    expected = load_embedder(entry, device="cpu", dtype="float32").encode(["fonts"], role="query")
    hash_cache_file().unlink()
    disk.fill()
    with caplog.at_level("WARNING"):
        embedder = load_embedder(entry, device="cpu", dtype="float32", traced=True)
    np.testing.assert_array_equal(embedder.encode(["fonts"], role="query"), expected)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no space left on device" in w and "traced encoder" in w for w in warnings), warnings
    assert any("no space left on device" in w and "hash is not cached" in w for w in warnings), warnings
    assert not hash_cache_file().exists() and not [p for p in traced_cache_dir().rglob("*") if p.is_file()]
    disk.free()
    load_embedder(entry, device="cpu", dtype="float32", traced=True)
    assert isinstance(load_embedder(entry, device="cpu", dtype="float32", traced=True).model, TracedEncoder)
    assert hash_cache_file().is_file()


# --------------------------------------------------------------------------- text that is not text
SURROGATE = "\ud800"


def test_lone_surrogates_are_one_line_wherever_text_comes_in(tmp_path, registry, built):
    """From a JSON "\\ud800" escape or from command-line bytes that are not UTF-8 (Python turns them
    into lone surrogates), a string with no UTF-8 form must not reach a tokenizer or a file."""
    import subprocess
    import sys

    from arretrieve.api import Index
    from arretrieve.corpus.queries import read_queries
    from arretrieve.encoding import load_embedder

    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "ok", "text": "fine"}\n{"_id": "bad\\ud800", "text": "x"}\n')
    with pytest.raises(ArrError, match=r"c.jsonl:2: field '_id' holds a lone surrogate \(U\+D800\)"):
        build_index(corpus, name="s", model="tiny", store=IndexStore(tmp_path / "ix"), registry=registry)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q1", "text": "text \\udcff"}\n')
    with pytest.raises(ArrError, match=r"q.jsonl:1: query 'q1' holds a lone surrogate \(U\+DCFF\)"):
        read_queries(queries)
    index = Index("idx", index_dir=built.root, registry=registry)
    with pytest.raises(ArrError, match="query 2 holds a lone surrogate"):
        index.search_many(["fine", "bad " + SURROGATE])
    embedder = load_embedder(registry.get("tiny"), device="cpu", dtype="float32")
    with pytest.raises(ArrError, match="text 1 holds a lone surrogate"):
        embedder.encode([SURROGATE], role="query")

    env = {**os.environ, "ARR_INDEXES": str(built.root)}
    argv = [sys.executable, "-m", "arretrieve.cli.app", "search", os.fsencode("bad \udcff"), "--index", "idx"]
    ran = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert [line for line in ran.stderr.splitlines() if line.startswith("error:")] == [
        "error: query 1 holds a lone surrogate (U+DCFF) at character 4, which is not text (a broken \\u escape, "
        "or bytes that are not UTF-8)"]


def test_mining_a_query_with_no_bm25_token_is_not_a_crash(tmp_path):
    """bm25s fails on a query left with no token; such a query scores every text 0, like one whose
    terms no text holds, and gets other texts as negatives."""
    from arretrieve.training.mining import MiningSettings, mine_negatives

    data = tmp_path / "pairs.jsonl"
    pairs = [("yaml parser", "PyYAML parses yaml files"), ("!!! ???", "fonts for the desktop"),
             ("the a of", "yaml files for the desktop"), ("yaml fonts", "fonts and yaml tools")]
    data.write_text("".join(json.dumps({"query": q, "pos": p}) + "\n" for q, p in pairs))
    mine_negatives(str(data), tmp_path / "out.jsonl", settings=MiningSettings(max_score_ratio=None))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert all(len(r["neg"]) == 1 and r["neg"][0] != r["pos"] for r in rows)
