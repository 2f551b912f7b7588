"""Label-free adaptation (`arr adapt`): pseudo-queries from the model's own decoder, and the `adapt`
recipe on a tiny random model."""

import json
from pathlib import Path

import pytest

from arretrieve.errors import ArrError
from arretrieve.training.pseudo_queries import pseudo_queries
from conftest import SENTENCES, crash_at_step

# Twelve documents, distinct texts (a random model's greedy lines differ between them).
DOCUMENTS = [f"{s} number {i} with notes" for i, s in enumerate(SENTENCES * 2)]


def _beir_folder(folder: Path, queries: str = "", qrels: str = "") -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) + "\n"
                                                 for i, t in enumerate(DOCUMENTS)))
    (folder / "queries.jsonl").write_text(queries)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def _generate(corpus: Path, output: Path, registry, **settings) -> dict:
    # A random model writes the same few lines for many documents: repeats are kept here.
    settings = {"keep_top": len(DOCUMENTS), "held_out": 0.25, "min_words": 0, "distinct": False, "max_new_tokens": 6,
                "batch_size": 4, **settings}
    return pseudo_queries(str(corpus), output, "tiny", registry=registry, **settings)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "report.json"}


@pytest.mark.parametrize("source", ["text", "states"])
def test_pseudo_queries_are_deterministic_for_a_seed_and_never_read_queries_or_qrels(tmp_path, registry, source):
    clean = _beir_folder(tmp_path / "clean")
    # Queries and qrels that would fail to parse (and would leak labels) if anything read them.
    poisoned = _beir_folder(tmp_path / "poisoned", queries="{not json\n", qrels="garbage\n")
    first = _generate(clean, tmp_path / "a", registry, source=source)
    again = _generate(poisoned, tmp_path / "b", registry, source=source)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert first["documents"] == len(DOCUMENTS) and first["train_rows"] > 0
    assert {k: v for k, v in first.items() if k != "generation_s"} == {k: v for k, v in again.items() if k != "generation_s"}
    rows = [json.loads(line) for line in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert all(row["pos"] in DOCUMENTS and row["query"] for row in rows)
    held = (tmp_path / "a" / "held-out")
    held_ids = {line.split("\t")[1] for line in (held / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    assert not held_ids & {f"d{DOCUMENTS.index(r['pos'])}" for r in rows}  # held back: never trained on
    other_seed = _generate(clean, tmp_path / "c", registry, source=source, seed=1)
    assert other_seed["train_rows"] + other_seed["held_out_queries"] == first["train_rows"] + first["held_out_queries"]
    assert not (tmp_path / "a.lines.jsonl").exists()


def test_an_interrupted_generation_resumes_after_its_last_whole_batch(tmp_path, registry, monkeypatch):
    from arretrieve.modeling.autoregembed_model import AutoRegEmbedModel

    corpus = _beir_folder(tmp_path / "corpus")
    _generate(corpus, tmp_path / "straight", registry)
    original, calls = AutoRegEmbedModel.write_from_text, []

    def stop_after_two_batches(self, texts, *args, **kwargs):
        calls.append(len(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(AutoRegEmbedModel, "write_from_text", stop_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        _generate(corpus, tmp_path / "resumed", registry)
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.lines.jsonl").is_file()
    calls.clear()
    _generate(corpus, tmp_path / "resumed", registry)
    assert calls == [4]  # only the third batch was written again
    assert _files(tmp_path / "straight") == _files(tmp_path / "resumed")


def test_pseudo_queries_refuse_a_model_without_a_decoder_and_an_empty_result(tmp_path, registry, tiny_st_dir):
    from arretrieve.registry import ModelEntry

    corpus = _beir_folder(tmp_path / "corpus")
    registry.add(ModelEntry(name="st", kind="sentence-transformers", base=str(tiny_st_dir), dim=32))
    with pytest.raises(ArrError, match="written by an AutoRegEmbed model's decoder"):
        pseudo_queries(str(corpus), tmp_path / "out", "st", registry=registry)
    with pytest.raises(ArrError, match="none of the 12 documents' lines passed the filter"):
        _generate(corpus, tmp_path / "out", registry, min_words=1000)


def test_lines_from_text_read_only_the_first_tokens_and_need_a_chat_template(tmp_path, registry, tiny_llama_dir):
    import shutil

    import torch

    from arretrieve.modeling.loading import load_autoregembed
    from conftest import tiny_entry

    model = load_autoregembed(registry.get("tiny"), torch.float32, torch.device("cpu"), frozen_decoder=True)
    text = DOCUMENTS[0]
    cap = len(model._tokenize([text])[0])
    lines = model.write_from_text([text, text + " and a tail the cap cuts off"], "Title?", 6, max_text_tokens=cap)
    assert lines[0] == lines[1] and "\n" not in lines[0]
    assert model.write_from_text([text], "Title?", 6, cap) == lines[:1]  # batched as alone: left padding

    plain = Path(shutil.copytree(tiny_llama_dir, tmp_path / "plain"))
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    registry.add(tiny_entry(plain, "plain"))
    corpus = _beir_folder(tmp_path / "corpus")
    with pytest.raises(ArrError, match='has no chat template.*source = "states"'):
        pseudo_queries(str(corpus), tmp_path / "out", "plain", registry=registry)
    assert _generate(corpus, tmp_path / "out", registry, source="states")["documents"] == len(DOCUMENTS)


def test_an_adaptation_registers_a_model_and_resumes_after_a_kill(tmp_path, registry, monkeypatch):
    from arretrieve.modeling.autoregembed_model import AutoRegEmbedModel
    from arretrieve.training.adapt import adapt

    # The shipped recipe drops repeated lines, which is all a random model writes: lines of its own.
    monkeypatch.setattr(AutoRegEmbedModel, "write_from_text", lambda self, texts, *a, **k: [" ".join(t.split()[-4:]) for t in texts])
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(DOCUMENTS)))
    flags, scale = {"dtype": "float32", "logging_steps": 1}, 0.08  # 4 steps, saved and evaluated at each

    with crash_at_step(3):
        adapt(corpus, "adapted", "tiny", registry=registry, output_dir=tmp_path / "run", flags=flags, scale=scale)
    assert "adapted" not in registry.names()
    assert (tmp_path / "run" / "train" / "align" / "checkpoint-2").is_dir()
    result = adapt(corpus, "adapted", "tiny", registry=registry, output_dir=tmp_path / "run", flags=flags, scale=scale)
    assert result.skipped == ["pseudo", "mined"] and result.ran == ["train", "train-r64"]
    recipe = registry.get("adapted").provenance["recipe"]
    assert recipe["name"] == "adapt" and [s["name"] for s in recipe["steps"]] == ["pseudo", "mined", "train", "train-r64"]
    pseudo = recipe["steps"][0]["counts"]
    assert pseudo["documents"] == len(DOCUMENTS) and len(pseudo["corpus_sha256"]) == 64 and pseudo["train_rows"] > 0


def test_arr_adapt_refuses_a_missing_corpus_and_a_model_without_a_decoder(tmp_path, registry, tiny_st_dir):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.registry import ModelEntry

    registry.add(ModelEntry(name="st", kind="sentence-transformers", base=str(tiny_st_dir), dim=32))
    runner = CliRunner()
    missing = runner.invoke(app, ["adapt", str(tmp_path / "nothing.jsonl"), "--name", "x", "--base", "tiny"])
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception)
    corpus = _beir_folder(tmp_path / "corpus")
    refused = runner.invoke(app, ["adapt", str(corpus), "--name", "x", "--base", "st"])
    assert refused.exit_code != 0 and "needs an AutoRegEmbed model" in str(refused.exception)
    assert not Path("runs/x").exists()
