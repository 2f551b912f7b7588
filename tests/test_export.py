import json

import numpy as np
import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from arretrieve.cli.app import app
from arretrieve.encoding import load_embedder
from arretrieve.errors import ArrError
from arretrieve.export.arretrieve_folder import export_arretrieve_folder as export_model
from arretrieve.registry import Registry
from arretrieve.registry.model_folder import read_model_folder
from arretrieve.training import TrainConfig, train
from conftest import SENTENCES, tiny_entry


def _train(tmp_path, registry, name, base, lora=True):
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({"query": s[:14], "pos": s, "neg": SENTENCES[(i + 1) % 6]}) + "\n"
                                for i, s in enumerate(SENTENCES)))
    train(TrainConfig(name=name, base=base, objective="contrastive", alignment_data=str(triplets), lora=lora,
                      align={"max_steps": 2, "batch_size": 3, "lr": 1e-3}, dtype="float32", lora_r=4, lora_alpha=8,
                      output_dir=str(tmp_path / f"run-{name}")), registry=registry)


@pytest.fixture
def trained(tmp_path, tiny_llama_dir):
    registry = Registry()
    registry.add(tiny_entry(tiny_llama_dir, name="tiny"))
    _train(tmp_path, registry, "tiny-trained", "tiny")
    return registry


def _vectors(entry):
    return load_embedder(entry, device="cpu").encode(["yaml parser", "fonts for the console"], role="document")


def test_export_then_import_gives_the_same_model_in_half_the_bytes(tmp_path, trained):
    folder = tmp_path / "shared-model"
    exported = export_model(trained.get("tiny-trained"), folder, name="tiny-shared")
    assert {p.name for p in folder.iterdir()} == {"entry.json", "weights"}
    with safe_open(str(folder / "weights" / "adapter_model.safetensors"), framework="pt") as handle:
        assert {str(handle.get_tensor(k).dtype) for k in handle.keys()} == {"torch.float16"}
    assert json.loads((folder / "weights" / "adapter_config.json").read_text())["base_model_name_or_path"] == exported.base
    # peft's generated model card names a path on the training machine: it stays behind.
    assert "README.md" not in {p.name for p in (folder / "weights").iterdir()}

    imported = read_model_folder(folder)
    assert imported.name == "tiny-shared" and imported.weights_sha256 == exported.weights_sha256
    assert imported.provenance["exported"]["from"] == "tiny-trained"
    # fp16 weights are another model as far as indexes go, but encode (almost) the same vectors.
    assert imported.fingerprint != trained.get("tiny-trained").fingerprint
    original, shared = _vectors(trained.get("tiny-trained")), _vectors(imported)
    assert np.all(np.sum(original * shared, axis=1) > 0.999)


def test_cli_round_trip_and_refusals(tmp_path, trained):
    runner = CliRunner()
    folder = tmp_path / "out"
    result = runner.invoke(app, ["models", "export", "tiny-trained", str(folder), "--name", "tiny-copy"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["models", "import", str(folder)]).exit_code == 0
    assert Registry().get("tiny-copy").weights_path == str((folder / "weights").resolve())

    refusals = [
        (["models", "export", "tiny-trained", str(folder)], "not an empty folder"),
        (["models", "export", "tiny", str(tmp_path / "base")], "untrained base"),
        (["models", "import", str(tmp_path)], "no entry.json"),
        (["models", "import", str(folder)], "already exists"),
    ]
    for arguments, message in refusals:
        result = runner.invoke(app, arguments)
        assert result.exit_code != 0 and message in str(result.exception or result.output), arguments


def test_changed_weights_are_refused_at_load(tmp_path, trained):
    folder = tmp_path / "out"
    export_model(trained.get("tiny-trained"), folder)
    (folder / "weights" / "compress_embeddings.safetensors").write_bytes(b"tampered")
    with pytest.raises(ArrError, match="changed since"):
        _vectors(read_model_folder(folder))


def test_the_training_lineage_travels_with_the_folder(tmp_path, trained):
    _train(tmp_path, trained, "tiny-child", "tiny-trained")
    exported = export_model(trained.get("tiny-child"), tmp_path / "child", registry=trained)
    assert [step["name"] for step in exported.provenance["lineage"]] == ["tiny-trained"]
    assert exported.provenance["lineage"][0]["trained_by"].startswith("arr train")
    assert export_model(trained.get("tiny-trained"), tmp_path / "parent", registry=trained).provenance["lineage"] == []


def test_merged_adapter_is_cached_and_gives_the_same_vectors(tmp_path, trained, isolated_home):
    from arretrieve.home import merged_cache_dir

    entry = trained.get("tiny-trained")
    first = _vectors(entry)
    cached = list(merged_cache_dir().iterdir())
    assert [p.name for p in cached] == [f"{entry.fingerprint}-float32"]
    assert np.array_equal(_vectors(entry), first)  # the second load reads the merged cache


def test_full_weights_export_as_a_low_rank_adapter(tmp_path, trained):
    _train(tmp_path, trained, "tiny-full", "tiny", lora=False)
    full = trained.get("tiny-full")
    assert full.weights == "full"
    # Rank 64 is every matrix's full rank in the tiny model (hidden 64): the adapter is the model.
    exact = export_model(full, tmp_path / "exact", half=False, low_rank=64)
    assert exact.weights == "adapter" and exact.provenance["exported"]["low_rank"]["kept"] == pytest.approx(1.0)
    config = json.loads((tmp_path / "exact" / "weights" / "adapter_config.json").read_text())
    assert "embed_tokens" in config["target_modules"] and "norm" in " ".join(config["modules_to_save"])
    with safe_open(str(tmp_path / "exact" / "weights" / "adapter_model.safetensors"), framework="pt") as handle:
        assert not [k for k in handle.keys() if k.endswith("embed_tokens.weight")]  # factors, never the matrix
    imported = read_model_folder(tmp_path / "exact")
    np.testing.assert_allclose(_vectors(imported), _vectors(full), atol=1e-5)

    small = export_model(full, tmp_path / "small", low_rank=2)
    kept = small.provenance["exported"]["low_rank"]
    assert 0 < kept["kept"] < 1 and 0 < kept["kept_embedding"] < 1
    size = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*.safetensors"))
    assert size < sum(p.stat().st_size for p in (tmp_path / "exact").rglob("*.safetensors")) / 10
    assert np.all(np.sum(_vectors(read_model_folder(tmp_path / "small")) * _vectors(full), axis=1) > 0.5)

    runner = CliRunner()
    for arguments, message in [
        (["models", "export", "tiny-trained", str(tmp_path / "a"), "--low-rank", "4"], "full weights only"),
        (["models", "export", "tiny-full", str(tmp_path / "b"), "--low-rank", "0"], "at least 1"),
        (["models", "export", "tiny-full", str(tmp_path / "c"), "--low-rank", "4", "--format", "sentence-transformers"],
         "arretrieve adapter folder"),
    ]:
        result = runner.invoke(app, arguments)
        assert result.exit_code != 0 and message in str(result.exception or result.output), arguments
    result = runner.invoke(app, ["models", "export", "tiny-full", str(tmp_path / "d"), "--low-rank", "8"])
    assert result.exit_code == 0 and "rank 8 keeping" in result.output, result.output
