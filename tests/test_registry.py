import json

import pytest

from arretrieve.errors import ArrError
from arretrieve.registry import DEFAULT_MODEL, ModelEntry, Registry
from arretrieve.registry.builtin_models import PURE_AUTOREGEMBED_MODEL
from conftest import tiny_entry


def test_builtin_entries_are_listed_and_default():
    registry = Registry()
    assert {"autoregembed-s1-infonce-smollm2-135m", "autoregembed-smollm2-135m", "smollm2-135m",
            "all-minilm-l6-v2"} <= set(registry.names())
    assert registry.default_name == DEFAULT_MODEL == "autoregembed-s1-infonce-smollm2-135m"
    entry = registry.get("smollm2-135m")
    assert entry.kind == "autoregembed" and entry.num_compress_tokens == 5
    assert entry.prompts["query"].endswith("\u201c")


@pytest.mark.parametrize("name", [DEFAULT_MODEL, PURE_AUTOREGEMBED_MODEL])
def test_shipped_models_are_trained_small_and_intact(name):
    from arretrieve.registry.model_folder import weights_folder

    entry = Registry().get(name)
    assert entry.builtin and entry.kind == "autoregembed" and entry.weights == "adapter"
    assert entry.weights_path.startswith("package:arretrieve/")  # the same entry wherever it is installed
    folder = weights_folder(entry)  # raises if the shipped files do not match the recorded hash
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 50 * 10**6  # the package's budget per model
    assert entry.base == Registry().get("smollm2-135m").base


def test_the_default_says_how_it_was_trained():
    """InfoNCE on a fully fine-tuned AutoRegEmbed stage 1, continued twice (the last time on mined
    hard negatives), then twice with the compression terms (every earlier step kept in its lineage,
    nearest first), shipped as a low-rank extraction that records what share of the weight
    difference it keeps."""
    default, pure = Registry().get(DEFAULT_MODEL), Registry().get(PURE_AUTOREGEMBED_MODEL)
    assert default.provenance["objective"] == "contrastive+compression" and default.provenance["stages"] == ["align"]
    assert "InfoNCE" in default.description and "compression" in default.description and "low-rank" in default.description
    assert "bm25neg" in default.provenance["data"]["alignment"]["source"]
    hyperparameters = default.provenance["hyperparameters"]
    assert hyperparameters["reconstruction_weight"] == hyperparameters["query_reconstruction_weight"] == 1.0
    compressing, hardneg, continued, first_infonce, stage1 = default.provenance["lineage"]
    assert compressing["objective"] == "contrastive+compression" and compressing["exported"]["low_rank"]["rank"] == 64
    assert hardneg["steps"] == continued["steps"] == {"align": 600} and "bm25neg" in hardneg["data"]["alignment"]["source"]
    assert first_infonce["objective"] == "contrastive" and first_infonce["exported"]["low_rank"]["rank"] == 64
    assert stage1["stages"] == ["compress"] and stage1["hyperparameters"]["lora"] is False
    assert default.provenance["exported"]["low_rank"]["rank"] == 64
    assert pure.provenance["stages"] == ["compress", "align"] and pure.provenance["objective"] == "autoregembed"


def test_round_trip_keeps_every_field_and_fingerprint(tmp_path):
    registry = Registry()
    entry = tiny_entry(tmp_path, name="my-model", provenance={"training": "test"})
    path = registry.add(entry)
    stored = json.loads(path.read_text())
    assert stored["fingerprint"] == entry.fingerprint
    loaded = registry.get("my-model")
    assert loaded == entry
    assert loaded.fingerprint == entry.fingerprint
    assert "my-model" in registry.names()


def test_fingerprint_tracks_what_changes_vectors(tmp_path):
    entry = tiny_entry(tmp_path)
    changed_prompt = tiny_entry(tmp_path, prompts={**entry.prompts, "query": "Q: {text}"})
    changed_description = tiny_entry(tmp_path, description="other words")
    assert changed_prompt.fingerprint != entry.fingerprint
    assert changed_description.fingerprint == entry.fingerprint


@pytest.mark.parametrize("bad", ["../evil", "a/b", "", "UPPER", ".hidden", "x" * 65, "a..b", "name with space"])
def test_bad_names_are_refused(tmp_path, bad):
    with pytest.raises(ArrError, match="invalid name"):
        tiny_entry(tmp_path, name=bad)


def test_add_refuses_builtin_names_and_duplicates(tmp_path):
    registry = Registry()
    with pytest.raises(ArrError, match="built-in"):
        registry.add(tiny_entry(tmp_path, name="smollm2-135m"))
    registry.add(tiny_entry(tmp_path, name="dup"))
    with pytest.raises(ArrError, match="already exists"):
        registry.add(tiny_entry(tmp_path, name="dup"))
    registry.add(tiny_entry(tmp_path, name="dup", max_length=32), overwrite=True)
    assert registry.get("dup").max_length == 32


def test_remove_and_default(tmp_path):
    registry = Registry()
    registry.add(tiny_entry(tmp_path, name="mine"))
    registry.set_default("mine")
    assert registry.default_name == "mine"
    assert registry.resolve(None).name == "mine"
    registry.remove("mine")
    assert registry.default_name == DEFAULT_MODEL
    with pytest.raises(ArrError, match="cannot be removed"):
        registry.remove("smollm2-135m")
    with pytest.raises(ArrError, match="no model named"):
        registry.set_default("missing")


def test_invalid_entries_are_explained(tmp_path):
    with pytest.raises(ArrError, match="exactly one"):
        tiny_entry(tmp_path, prompts={"query": "no slot", "document": "{text}", "symmetric": "{text}"})
    with pytest.raises(ArrError, match="num_compress_tokens"):
        tiny_entry(tmp_path, num_compress_tokens=0)
    with pytest.raises(ArrError, match="unknown entry fields"):
        ModelEntry.from_dict({"name": "x", "kind": "autoregembed", "base": "b", "colour": 1})


def test_corrupted_user_entry_is_a_one_line_error(isolated_home):
    (isolated_home / "models").mkdir(parents=True)
    (isolated_home / "models" / "broken.json").write_text("{not json")
    with pytest.raises(ArrError, match="cannot read registry entry"):
        Registry().get("broken")


def test_user_entry_file_is_written_atomically(tmp_path, isolated_home):
    registry = Registry()
    registry.add(tiny_entry(tmp_path, name="atomic"))
    leftovers = [p.name for p in (isolated_home / "models").iterdir() if p.name != "atomic.json"]
    assert leftovers == []
