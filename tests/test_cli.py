import json
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from arretrieve.cli.app import app
from conftest import SENTENCES, tiny_entry, write_beir_corpus

runner = CliRunner()


def _arr(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from arretrieve.cli.app import main; sys.argv = ['arr', *sys.argv[1:]]; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)


def test_models_list_and_show():
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert "smollm2-135m" in listed.output and "autoregembed" in listed.output
    default_row = next(line for line in listed.output.splitlines() if "autoregembed-s1-infonce-smollm2-135m" in line)
    assert default_row.split()[0] == "*"  # the trained built-in is the default
    shown = runner.invoke(app, ["models", "show", "smollm2-135m", "--json"])
    payload = json.loads(shown.output)
    assert payload["num_compress_tokens"] == 5 and len(payload["fingerprint"]) == 16
    assert set(payload["prompts"]) == {"symmetric", "query", "document", "i_next", "i_self"}


def test_models_add_default_remove(tiny_llama_dir):
    added = runner.invoke(app, ["models", "add", "mine", "--base", str(tiny_llama_dir), "--k", "2", "--max-length", "128"])
    assert added.exit_code == 0, added.output
    shown = json.loads(runner.invoke(app, ["models", "show", "mine", "--json"]).output)
    assert shown["dim"] == 64 and shown["add_bos"] is True and shown["base_sha256"]
    assert runner.invoke(app, ["models", "default", "mine"]).output.strip() == "mine"
    assert runner.invoke(app, ["models", "remove", "mine"]).exit_code == 0
    assert runner.invoke(app, ["models", "default"]).output.strip() == "autoregembed-s1-infonce-smollm2-135m"


def test_errors_are_one_line_without_traceback():
    for args, message in [
        (["models", "show", "nope"], "no model named 'nope'"),
        (["models", "add", "../x", "--base", "y/z"], "invalid name"),
        (["search", "some query"], "no index"),
        (["search", " "], "empty query"),
        (["index", "/definitely/missing"], "does not exist"),
        (["index", "/definitely/missing", "--index-type", "flat", "--ef-construction", "200"], "shape HNSW graphs"),
        (["index", "/definitely/missing", "--index-type", "hnsw", "--reduced-dim", "64"], "graph dimension of hnsw-pca"),
    ]:
        result = _arr(*args)
        assert result.returncode == 1
        assert result.stderr.strip() == f"error: {result.stderr.strip()[7:]}"
        assert message in result.stderr and "Traceback" not in result.stderr


def test_index_then_search(tmp_path, tiny_llama_dir):
    from arretrieve.registry import Registry

    Registry().add(tiny_entry(tiny_llama_dir, name="tiny"))
    rows = [{"_id": f"d{i}", "title": "", "text": text} for i, text in enumerate(SENTENCES)]
    corpus = write_beir_corpus(tmp_path / "docs", rows)
    built = runner.invoke(app, ["index", str(corpus), "--model", "tiny"])
    assert built.exit_code == 0, built.output
    assert "indexed 6 documents with tiny" in built.output
    found = runner.invoke(app, ["search", "yaml parser", "-k", "2", "--json"])
    hits = json.loads(found.output)
    assert [h["rank"] for h in hits] == [1, 2]
    assert set(hits[0]) == {"rank", "score", "id", "title", "text"}
    table = runner.invoke(app, ["search", "yaml parser", "-k", "2"])
    assert "docs · tiny" in table.output
    unused = runner.invoke(app, ["search", "yaml parser", "--ef-search", "10"])
    assert "--ef-search does not apply to a flat index" in str(unused.exception)
    # -o is honoured for one query too, and --json with --queries writes JSON lines.
    assert runner.invoke(app, ["search", "yaml parser", "-k", "2", "-o", str(tmp_path / "one.json")]).exit_code == 0
    assert [h["rank"] for h in json.loads((tmp_path / "one.json").read_text())] == [1, 2]
    (tmp_path / "q.tsv").write_text("q1\tyaml parser\nq2\tfonts\n")
    lines = runner.invoke(app, ["search", "--queries", str(tmp_path / "q.tsv"), "-k", "2", "--json"]).output.splitlines()
    assert [json.loads(line)["query_id"] for line in lines] == ["q1", "q2"]
    assert all(len(json.loads(line)["hits"]) == 2 for line in lines)


def test_help_starts_fast():
    start = time.perf_counter()
    result = _arr("--help")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0 and "index" in result.stdout
    assert "torch" not in _arr_imports()
    assert elapsed < 5  # generous bound for loaded CI machines; the real figure is in BENCHMARKS.md


def _arr_imports() -> str:
    code = "import sys; import arretrieve.cli.app; print(' '.join(sorted(sys.modules)))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout


def test_version_and_close_match_suggestions(tmp_path, tiny_llama_dir):
    from arretrieve import __version__
    from arretrieve.errors import ArrError

    assert runner.invoke(app, ["--version"]).output.strip() == f"arr {__version__}"
    runner.invoke(app, ["models", "add", "my-tiny-model", "--base", str(tiny_llama_dir), "--k", "3"])
    missed = runner.invoke(app, ["index", str(write_beir_corpus(tmp_path / "c", [{"_id": "a", "text": "x"}])),
                                 "--name", "notes", "--model", "my-tiny-modle"])
    assert isinstance(missed.exception, ArrError) and "did you mean 'my-tiny-model'?" in str(missed.exception)
    built = runner.invoke(app, ["index", str(tmp_path / "c"), "--name", "notes", "--model", "my-tiny-model"])
    assert built.exit_code == 0, built.exception
    missed = runner.invoke(app, ["search", "x", "--index", "note"])
    assert "did you mean 'notes'?" in str(missed.exception)


def test_slow_first_steps_say_so(tmp_path, tiny_llama_dir, caplog):
    """The first search builds the traced encoder (once): one line says so and how long it took; a
    corpus truncated at max_length is told about --chunk-words."""
    from arretrieve.encoding import load_embedder

    entry = tiny_entry(tiny_llama_dir)
    with caplog.at_level("WARNING"):
        load_embedder(entry, device="cpu", dtype="float32", traced=True)
        load_embedder(entry, device="cpu", dtype="float32", traced=True)  # cached now: silent
        load_embedder(entry, device="cpu", dtype="float32").encode(["long " * 2000], role="document")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("building its fast query encoder" in m for m in messages) == 1
    assert any("fast query encoder of tiny built in" in m for m in messages)
    assert any("--chunk-words" in m for m in messages)


def test_help_has_one_flag_style_and_train_groups_its_options():
    import re

    for command in (["search"], ["index"], ["models", "add"], ["data", "debian-desc"], ["beir-eval"]):
        text = runner.invoke(app, [*command, "--help"], terminal_width=200).output
        assert "--no-no-" not in text and "[default: no-" not in text, command
    train = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    panels = re.findall(r"╭─ ([A-Za-z ]+?) ─", train)
    assert {"Model and data", "LoRA", "Objective", "Optimisation", "Run folder", "Recipe or settings file"} <= set(panels)


def test_a_search_written_to_a_file_says_where(tmp_path, tiny_llama_dir):
    runner.invoke(app, ["models", "add", "tiny", "--base", str(tiny_llama_dir), "--k", "3"])
    corpus = write_beir_corpus(tmp_path / "c", [{"_id": f"d{i}", "text": s} for i, s in enumerate(SENTENCES)])
    assert runner.invoke(app, ["index", str(corpus), "--name", "w", "--model", "tiny"]).exit_code == 0
    ran = runner.invoke(app, ["search", "fonts", "--index", "w", "-o", str(tmp_path / "hits.json")])
    assert ran.exit_code == 0 and f"wrote {len(SENTENCES)} hits to {tmp_path / 'hits.json'}" in ran.output.replace("\n", "")


@pytest.mark.parametrize("flags, message", [
    (["--objective", "nope"], "objective must be one of"),
    (["--objective", "contrastive", "--alignment-data", "missing.jsonl"], "missing.jsonl is not a data file"),
    (["--objective", "contrastive", "--alignment-data", "{bad}"], "bad.jsonl:1: malformed JSON"),
])
def test_a_bad_training_setting_or_data_file_is_refused_before_torch_loads(tmp_path, flags, message):
    (tmp_path / "bad.jsonl").write_text('{"query": "a"\n')
    argv = ["arr", "train", "--name", "x", *[f.format(bad=tmp_path / "bad.jsonl") for f in flags]]
    script = (f"import sys; sys.argv = {argv!r}\n"
              "from arretrieve.cli.app import main\n"
              "try:\n    main()\nexcept SystemExit:\n    pass\n"
              "print('torch' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert message in ran.stderr and ran.stdout.strip() == "False", ran.stderr
