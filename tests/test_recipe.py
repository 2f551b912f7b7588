"""Recipes (`arr train --recipe`): plans of data, training and export steps, resumable, on a tiny model."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from arretrieve.errors import ArrError
from arretrieve.training.recipe import load_recipe, plan_recipe, run_recipe, shipped_recipes
from conftest import SENTENCES, crash_at_step

THREE_STEPS = """
description = "rows, stage 1, a rank-8 export"
base = "tiny"

[[steps]]
name = "rows"
kind = "data"
builder = "reconstruction-rows"
input = "{data}/compression.jsonl"
output = "{run}/rows.jsonl"
every = 2

[[steps]]
name = "stage1"
kind = "train"
stage = "compress"
compression_data = "{run}/rows.jsonl"
lora = false
dtype = "float32"
warmup_ratio = 0.0
save_steps = 2
logging_steps = 1
compress = { max_steps = 4, batch_size = 4 }

[[steps]]
name = "r8"
kind = "low-rank"
rank = 8
"""


@pytest.fixture
def recipe_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "compression.jsonl").write_text("".join(json.dumps({"context": s + " with details", "instruction": "Summarize it.",
                                                                "output": s[:18]}) + "\n" for s in SENTENCES * 3))
    path = tmp_path / "three.toml"
    path.write_text(THREE_STEPS)
    return path, data


def _run(recipe_file, tmp_path, name, registry, **kwargs):
    path, data = recipe_file
    plan = plan_recipe(load_recipe(str(path)), name, data=data, output_dir=tmp_path / "runs" / name)
    return run_recipe(plan, registry, **kwargs)


def _weights(folder: Path) -> dict:
    return {p.name: load_file(str(p)) for p in sorted(folder.glob("*.safetensors"))}


def test_a_three_step_recipe_registers_a_model_whose_provenance_lists_the_steps(tmp_path, recipe_file, registry):
    result = _run(recipe_file, tmp_path, "planned", registry)
    assert result.ran == ["rows", "stage1", "r8"] and result.entry.name == "planned"
    entry = registry.get("planned")
    assert entry.weights == "adapter" and Path(entry.weights_path).is_relative_to(registry.weights_dir("planned"))
    recipe = entry.provenance["recipe"]
    assert [s["name"] for s in recipe["steps"]] == ["rows", "stage1", "r8"]
    assert recipe["steps"][0]["counts"] == {"synopsis_rows": 18, "reconstruction_rows": 9}
    assert recipe["steps"][1]["steps"] == {"compress": 4}
    import shutil

    shutil.rmtree(tmp_path / "runs")  # the registered model does not live in the run folder
    from arretrieve.encoding import load_embedder

    assert load_embedder(registry.get("planned")).encode(["x"], role="query").shape == (1, 64)
    again = _run(recipe_file, tmp_path, "planned", registry, overwrite=True)
    assert again.ran == ["rows", "stage1", "r8"]  # its run folder was gone: every step ran again


def test_killed_in_its_second_step_and_run_again_it_ends_with_the_same_weights(tmp_path, recipe_file, registry):
    _run(recipe_file, tmp_path, "straight", registry)

    with crash_at_step(3):
        _run(recipe_file, tmp_path, "resumed", registry)
    assert (tmp_path / "runs" / "resumed" / "stage1" / "compress" / "checkpoint-2").is_dir()
    result = _run(recipe_file, tmp_path, "resumed", registry)
    assert result.skipped == ["rows"] and result.ran == ["stage1", "r8"]
    straight, resumed = (_weights(Path(registry.get(n).weights_path)) for n in ("straight", "resumed"))
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert straight[name].keys() == resumed[name].keys()
        assert all((straight[name][k] == resumed[name][k]).all() for k in straight[name]), name


def test_until_and_from(tmp_path, recipe_file, registry):
    stopped = _run(recipe_file, tmp_path, "parts", registry, until="stage1")
    assert stopped.entry is None and stopped.stopped_after == "stage1" and "parts" not in registry.names()
    finished = _run(recipe_file, tmp_path, "parts", registry)
    assert finished.skipped == ["rows", "stage1"] and finished.ran == ["r8"]
    again = _run(recipe_file, tmp_path, "parts", registry, start="stage1", overwrite=True)
    assert again.skipped == ["rows"] and again.ran == ["stage1", "r8"]
    with pytest.raises(ArrError, match="has no step 'nope'"):
        _run(recipe_file, tmp_path, "parts", registry, until="nope")


def test_a_missing_input_fails_before_any_model_loads_naming_the_step_and_the_file(tmp_path, recipe_file, registry, monkeypatch):
    path, data = recipe_file
    path.write_text(THREE_STEPS.replace("{data}/compression.jsonl", "{data}/missing.jsonl"))
    monkeypatch.setattr("arretrieve.training.model_setup.build_trainable", lambda *a, **k: pytest.fail("a model loaded"))
    with pytest.raises(ArrError, match=r"step 'rows': its input .*missing\.jsonl does not exist"):
        plan_recipe(load_recipe(str(path)), "x", data=data)
    with pytest.raises(ArrError, match="pass --data"):
        plan_recipe(load_recipe(str(path)), "x")
    path.write_text(THREE_STEPS.replace("every = 2", "every = 2\n\n[[steps]]\nname = \"bad\"\nkind = \"train\"\nlr_typo = 1"))
    with pytest.raises(ArrError, match="step 'bad'"):
        plan_recipe(load_recipe(str(path)), "x", data=data)


def test_a_changed_step_is_refused_on_resume_and_run_settings_may_change(tmp_path, recipe_file, registry):
    path, data = recipe_file
    recipe = load_recipe(str(path))
    run_recipe(plan_recipe(recipe, "changing", data=data, output_dir=tmp_path / "run"), registry, until="stage1")
    moved = plan_recipe(recipe, "changing", data=data, output_dir=tmp_path / "run", flags={"logging_steps": 2})
    assert run_recipe(moved, registry, until="stage1").ran == []  # where and how it runs may change
    path.write_text(THREE_STEPS.replace("every = 2", "every = 3"))
    with pytest.raises(ArrError, match="step 'rows' ran with other settings.*--from rows"):
        run_recipe(plan_recipe(load_recipe(str(path)), "changing", data=data, output_dir=tmp_path / "run"), registry)
    with pytest.raises(ArrError, match="only where and how it runs"):
        plan_recipe(recipe, "changing", data=data, flags={"lr": 1.0})


def test_scale_shrinks_every_training_step(tmp_path, recipe_file):
    path, data = recipe_file
    plan = plan_recipe(load_recipe(str(path)), "small", data=data, scale=0.5)
    assert plan.steps[1].settings["compress"]["max_steps"] == 2 and plan.steps[1].settings["save_steps"] == 1


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_every_shipped_recipe_plans(name, tmp_path):
    """Each shipped recipe parses and plans (inputs from a stand-in --data folder)."""
    recipe = load_recipe(name)
    assert recipe.description
    data = tmp_path / "data"
    for relative in ("train/compression.jsonl.gz", "train/triplets.jsonl.gz", "dev/corpus.jsonl", "pairs.jsonl"):
        (data / relative).parent.mkdir(parents=True, exist_ok=True)
        (data / relative).write_text("")
    plan = plan_recipe(recipe, "check", data=data)
    assert plan.steps


def test_the_continue_recipe_trains_a_model_on_a_users_pairs(tmp_path, registry):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": s[:14], "pos": s}) + "\n" for s in SENTENCES * 4))  # 3 steps of 8
    plan = plan_recipe(load_recipe("continue"), "mine", data=pairs, output_dir=tmp_path / "run", base="tiny",
                       flags={"dtype": "float32"})
    result = run_recipe(plan, registry)
    assert result.ran == ["mined", "train", "train-r64"]
    entry = registry.get("mine")
    assert entry.provenance["objective"] == "contrastive+compression" and entry.weights == "adapter"


def test_arr_train_runs_a_recipe_and_its_help_leads_to_the_recipes(tmp_path, recipe_file, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    path, data = recipe_file
    runner = CliRunner()
    stopped = runner.invoke(app, ["train", "--recipe", str(path), "--name", "cli-recipe", "--data", str(data),
                                  "--output-dir", str(tmp_path / "run"), "--until", "rows"])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped after rows" in stopped.output and (tmp_path / "run" / "rows.jsonl").is_file()
    refused = runner.invoke(app, ["train", "--recipe", str(path), "--name", "cli-recipe", "--data", str(data), "--lr", "1",
                                  "--output-dir", str(tmp_path / "elsewhere")])
    assert not (tmp_path / "elsewhere").exists()
    assert refused.exit_code != 0
    help_text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "300"}).output.split())
    assert "--recipe continue --data pairs.jsonl" in help_text and all(name in help_text for name in shipped_recipes())


def test_arr_train_with_data_alone_runs_the_continue_recipe_on_a_file(tmp_path, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": s[:14], "pos": s}) + "\n" for s in SENTENCES))
    result = CliRunner().invoke(app, ["train", "--data", str(pairs), "--name", "mine", "--base", "tiny",
                                      "--output-dir", str(tmp_path / "run"), "--until", "mined"])
    assert result.exit_code == 0, result.output
    assert "running the 'continue' recipe" in result.output and (tmp_path / "run" / "triplets.jsonl").is_file()


def test_reconstruction_rows_of_the_first_words_alone(tmp_path):
    from arretrieve.training.data_steps import RECONSTRUCTION_INSTRUCTION, reconstruction_rows

    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"context": s, "instruction": "Summarize it.", "output": s[:10]}) + "\n"
                              for s in SENTENCES[:4]))
    counts = reconstruction_rows(str(source), tmp_path / "short.jsonl", every=1, words=3, synopses=False)
    rows = [json.loads(line) for line in (tmp_path / "short.jsonl").read_text().splitlines()]
    assert counts == {"synopsis_rows": 0, "reconstruction_rows": 4}
    assert rows == [{"context": " ".join(s.split()[:3]), "instruction": RECONSTRUCTION_INSTRUCTION,
                     "output": " ".join(s.split()[:3])} for s in SENTENCES[:4]]
    with pytest.raises(ArrError, match="words must be at least 1"):
        reconstruction_rows(str(source), tmp_path / "none.jsonl", words=0)
