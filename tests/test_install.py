"""The core install (no extras beyond faiss) runs the main jobs: index, search, beir-eval, train."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from conftest import tiny_entry

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "debian-sample"
OPTIONAL = ("matplotlib", "datasets", "beir", "sentence_transformers", "fastapi", "uvicorn", "mteb", "pandas", "ray")


def test_the_core_runs_without_the_optional_packages(tmp_path, tiny_llama_dir):
    """Any import of an extra's package fails in that process; index + hybrid search, beir-eval's
    metrics, a two-step training run (its loss plots skipped with a warning) and the CLI's help all
    work, and the features that need an extra say which one in one line."""
    entry = asdict(tiny_entry(tiny_llama_dir))
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({"query": f"query {i}", "pos": f"document {i} text", "neg": [f"other {i}"]}) + "\n"
                                for i in range(8)))
    script = f"""
import importlib.machinery, json, sys
class NoExtras(importlib.machinery.PathFinder):  # these packages look uninstalled: find_spec gives None
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in {OPTIONAL!r}:
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path[:] = [NoExtras if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path]
from typer.testing import CliRunner
from arretrieve import Index
from arretrieve.cli.app import app
from arretrieve.errors import ArrError
from arretrieve.evaluation import run_beir_eval
from arretrieve.registry import ModelEntry, Registry
from arretrieve.training import TrainConfig, train

registry = Registry()
registry.add(ModelEntry(**{entry!r}))
index = Index.build({str(SAMPLE)!r}, name="sample", index_dir={str(tmp_path / "indexes")!r}, model="tiny", registry=registry)
hits = index.search("manage fonts", k=3)
records = run_beir_eval([{str(SAMPLE)!r}], ["tiny", "bm25"], output={str(tmp_path / "results")!r}, registry=registry)
result = train(TrainConfig(name="mine", base="tiny", objective="contrastive", alignment_data={str(triplets)!r},
                           output_dir={str(tmp_path / "run")!r}, dtype="float32", lora_r=4, lora_alpha=8,
                           **{{"align": {{"max_steps": 2, "batch_size": 4}}}}), registry=registry)
runner = CliRunner()
help_ok = runner.invoke(app, ["--help"]).exit_code == 0
plot = runner.invoke(app, ["beir-eval", {str(SAMPLE)!r}, "--models", "bm25", "--plot", "--output", {str(tmp_path / "r2")!r}])
try:
    Index.build({str(tmp_path / "c.parquet")!r}, name="pq", index_dir={str(tmp_path / "indexes")!r}, model="tiny", registry=registry)
    parquet = "read"
except ArrError as exc:
    parquet = str(exc)
print(json.dumps({{"hits": len(hits), "ndcg": [r.metrics["NDCG@10"] for r in records], "trained": result.entry.name,
                  "plots": sorted(p.name for p in result.run_dir.glob("*.png")), "help": help_ok,
                  "plot_exit": plot.exit_code, "plot_error": str(plot.exception), "parquet": parquet,
                  "loaded": sorted({{m.split(".")[0] for m in sys.modules}} & set({OPTIONAL!r}))}}))
"""
    (tmp_path / "c.parquet").write_bytes(b"PAR1")
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ.copy(),
                         cwd=str(tmp_path))
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["hits"] == 3 and all(0 < score <= 1 for score in report["ndcg"])
    assert report["trained"] == "mine" and report["plots"] == [] and "no loss plots" in ran.stderr
    assert report["help"] and report["loaded"] == []
    assert report["plot_exit"] != 0 and report["plot_error"] == "--plot: plots need matplotlib: pip install 'arretrieve[plots]'"
    assert "arretrieve[hf]" in report["parquet"]
