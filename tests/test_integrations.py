"""arretrieve models outside arretrieve: sentence-transformers folders and MTEB."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from arretrieve.cli.app import app
from arretrieve.encoding import load_embedder
from arretrieve.errors import ArrError
from arretrieve.evaluation.beir_eval import run_beir_eval
from arretrieve.registry import ModelEntry, Registry
from arretrieve.training import TrainConfig, train
from conftest import SENTENCES, tiny_entry

SentenceTransformer = pytest.importorskip("sentence_transformers").SentenceTransformer
from arretrieve.export.sentence_transformers import export_sentence_transformers  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "debian-sample"


@pytest.fixture
def trained_lora(tmp_path, tiny_llama_dir):
    """A tiny model with a trained LoRA adapter and compress rows (so the export has something to merge)."""
    registry = Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({"query": s[:14], "pos": s, "neg": SENTENCES[(i + 1) % 6]}) + "\n"
                                for i, s in enumerate(SENTENCES)))
    train(TrainConfig(name="tiny-trained", base="tiny", objective="contrastive", alignment_data=str(triplets),
                      align={"max_steps": 2, "batch_size": 3, "lr": 1e-2}, dtype="float32", lora_r=4, lora_alpha=8,
                      output_dir=str(tmp_path / "run")), registry=registry)
    return registry.get("tiny-trained")


def _cosines(a, b):
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_sentence_transformers_folder_gives_our_vectors_for_both_roles(tmp_path, trained_lora):
    folder = export_sentence_transformers(trained_lora, tmp_path / "st")
    assert [p.name for p in folder.rglob("*.py")] == ["autoregembed_encoder.py"]  # the folder carries its module
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["type"] for m in modules] == ["autoregembed_encoder.AutoRegEmbedEncoder"]
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert config["prompts"]["query"] == trained_lora.prompts["query"]
    assert config["prompts"]["document"] == trained_lora.prompts["document"]
    assert set(config["prompts"]) <= {"query", "document", "symmetric"}  # not training's i_next / i_self

    loaded = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    ours = load_embedder(trained_lora, device="cpu")
    texts = SENTENCES + ["a much longer text " * 40]  # one that is cut to max_length
    for role, theirs in (("query", loaded.encode_query(texts)), ("document", loaded.encode_document(texts)),
                         ("document", loaded.encode(texts))):
        assert _cosines(ours.encode(texts, role=role), theirs).min() >= 0.9999, role
    # The merged adapter really changed the weights: the untrained base encodes differently.
    base = load_embedder(Registry().get("tiny"), device="cpu").encode(SENTENCES, role="query")
    assert _cosines(base, loaded.encode_query(SENTENCES)).min() < 0.999


def test_a_sentence_transformers_entry_is_copied_with_its_prompts(tmp_path, tiny_st_dir):
    entry = ModelEntry(name="tiny-st", kind="sentence-transformers", base=str(tiny_st_dir), dim=32,
                       dtype="float32", max_length=64, prompts={"query": "query: {text}", "document": "{text}"})
    folder = export_sentence_transformers(entry, tmp_path / "st")
    loaded = SentenceTransformer(str(folder), device="cpu")  # plain sentence-transformers modules: no flag needed
    ours = load_embedder(entry, device="cpu")
    assert _cosines(ours.encode(SENTENCES, role="query"), loaded.encode_query(SENTENCES)).min() >= 0.9999
    assert _cosines(ours.encode(SENTENCES, role="document"), loaded.encode_document(SENTENCES)).min() >= 0.9999

    suffixed = ModelEntry(name="tiny-st2", kind="sentence-transformers", base=str(tiny_st_dir), dim=32,
                          dtype="float32", max_length=64, prompts={"query": "{text} (query)"})
    with pytest.raises(ArrError, match="can only precede"):
        export_sentence_transformers(suffixed, tmp_path / "st2")
    assert not (tmp_path / "st2").exists()


def test_cli_export_formats_and_refusals(tmp_path, trained_lora):
    runner = CliRunner()
    target = tmp_path / "st"
    result = runner.invoke(app, ["models", "export", "tiny-trained", str(target), "--format", "sentence-transformers"])
    assert result.exit_code == 0, result.output
    assert "trust_remote_code=True" in result.output and (target / "modules.json").is_file()
    half = tmp_path / "st-half"
    assert runner.invoke(app, ["models", "export", "tiny-trained", str(half), "--format", "sentence-transformers",
                               "--half"]).exit_code == 0
    assert json.loads((half / "config.json").read_text())["dtype"] == "float16"
    refusals = [
        (["models", "export", "tiny-trained", str(target), "--format", "sentence-transformers"], "not an empty folder"),
        (["models", "export", "tiny-trained", str(tmp_path / "x"), "--format", "sentence-transformers", "--name", "y"],
         "--name"),
        (["models", "export", "tiny-trained", str(tmp_path / "x"), "--format", "onnx"], "unknown --format"),
    ]
    for arguments, message in refusals:
        result = runner.invoke(app, arguments)
        assert result.exit_code != 0 and message in str(result.exception or result.output), arguments


def test_mteb_on_a_local_beir_folder_scores_what_beir_eval_scores(tmp_path, tiny_llama_dir):
    mteb = pytest.importorskip("mteb")
    from arretrieve.integrations.mteb_model import ArretrieveEncoder, beir_folder_task

    registry = Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    results = mteb.evaluate(ArretrieveEncoder("tiny", registry=registry, device="cpu"), beir_folder_task(SAMPLE),
                            cache=None, show_progress_bar=False)
    theirs = results.task_results[0].scores["test"][0]["ndcg_at_10"]
    ours = run_beir_eval([str(SAMPLE)], ["tiny"], output=tmp_path / "results", registry=registry)[0].metrics["NDCG@10"]
    assert theirs == pytest.approx(ours, abs=1e-5) and ours > 0


def test_an_exported_folder_loads_where_arretrieve_cannot_be_imported(tmp_path, trained_lora):
    """As on a machine with only sentence-transformers and transformers: any import of arretrieve
    fails in that process, and the folder still gives arretrieve's vectors; max_seq_length is settable."""
    import os
    import subprocess
    import sys

    folder = export_sentence_transformers(trained_lora, tmp_path / "st")
    script = f"""
import json, sys
class NoArretrieve:
    def find_spec(self, name, path=None, target=None):
        if name == "arretrieve" or name.startswith("arretrieve."):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, NoArretrieve())
from sentence_transformers import SentenceTransformer
model = SentenceTransformer({str(folder)!r}, trust_remote_code=True, device="cpu")
queries = model.encode_query({SENTENCES!r}).tolist()
model.max_seq_length = 90
short = model.encode_document(["a much longer text " * 40]).tolist()
print(json.dumps({{"queries": queries, "short": short, "imported": sorted(m for m in sys.modules if m.startswith("arretrieve"))}}))
"""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    ours = load_embedder(trained_lora, device="cpu")
    assert _cosines(ours.encode(SENTENCES, role="query"), np.array(report["queries"])).min() >= 0.9999
    from dataclasses import replace

    cut = load_embedder(replace(trained_lora, max_length=90), device="cpu").encode(["a much longer text " * 40])
    assert _cosines(cut, np.array(report["short"])).min() >= 0.9999
