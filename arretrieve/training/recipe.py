"""A recipe is a plan `arr train --recipe` runs: named steps in order, each a data step
(training/data_steps.py), a training run (`arr train`'s settings) or a low-rank export, each step
starting from the model the previous one made.

    description = "…"
    base = "smollm2-135m"              # what the first training step starts from (--base overrides)

    [[steps]]
    name = "rows"
    kind = "data"
    builder = "reconstruction-rows"
    input = "{data}/train/compression.jsonl.gz"
    output = "{run}/rows.jsonl"
    every = 2

    [[steps]]
    name = "stage1"
    kind = "train"                     # any `arr train` setting; `base` defaults to the previous model
    stage = "compress"
    compression_data = "{run}/rows.jsonl"
    compress = { lr = 1e-4, batch_size = 16, max_steps = 300 }

    [[steps]]
    name = "r64"
    kind = "low-rank"
    rank = 64

`{data}` is `--data`, `{run}` the recipe's run folder (`runs/NAME`, `--output-dir`), `{base}` the
model the first training step starts from (the recipe's `base` or `--base`). Every step is
checked, and every input file it names found, before any model loads. Each finished step is
recorded in `steps.json` in the run folder with the settings it ran with; running the same command
again skips those, resumes a training step from its last checkpoint and redoes an interrupted data
step or export, so an interrupted recipe ends with the weights an uninterrupted one gives. The
intermediate models live in the run folder's own registry; the last one is registered as NAME,
its weights under the toolkit home, its provenance listing every step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ArrError
from ..home import write_json_atomic
from ..registry import ModelEntry, Registry
from ..registry.model_entry import validate_name
from .config import STAGE_NAMES, TrainConfig, apply_preset, nest_stage_settings
from .data_steps import DATA_STEPS

log = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).parents[1] / "recipes"
KINDS = ("data", "train", "low-rank")
STEPS_FILE = "steps.json"
# A training step's settings that name input files (checked before anything loads).
TRAIN_INPUTS = ("compression_data", "alignment_data", "eval_data", "probe_data")
# Settings a recipe's run may take from the command line for every training step: where and how it
# runs, never what it trains.
# (Those a resumed training run may change, training/run_folder.py; they may differ between sessions.)
RUN_SETTINGS = ("device", "dtype", "logging_steps")


@dataclass
class Step:
    name: str
    kind: str
    settings: dict[str, Any]


@dataclass
class Recipe:
    name: str
    path: Path
    description: str
    base: str | None
    steps: list[Step]
    sha256: str

    def index(self, name: str) -> int:
        for position, step in enumerate(self.steps):
            if step.name == name:
                return position
        raise ArrError(f"recipe {self.name!r} has no step {name!r}; its steps: {', '.join(s.name for s in self.steps)}")


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(RECIPES_DIR.glob("*.toml"))}


def describe_recipes() -> list[tuple[str, str]]:
    """(name, description) of each shipped recipe."""
    return [(name, load_recipe(name).description) for name in shipped_recipes()]


def load_recipe(name_or_file: str) -> Recipe:
    """A shipped recipe by name, or a recipe file; its steps checked for shape."""
    import tomllib

    path = shipped_recipes().get(name_or_file) or Path(name_or_file)
    if not path.is_file():
        raise ArrError(f"no recipe {name_or_file!r}: neither a file nor one of the shipped recipes "
                       f"({', '.join(shipped_recipes())})")
    raw = path.read_bytes()
    try:
        payload = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ArrError(f"{path}: cannot parse ({exc})") from None
    unknown = sorted(set(payload) - {"description", "base", "steps"})
    if unknown:
        raise ArrError(f"{path}: unknown recipe keys {unknown} (description, base, steps)")
    steps = [_step(path, position, table) for position, table in enumerate(payload.get("steps") or [])]
    if not steps:
        raise ArrError(f"{path}: a recipe needs at least one [[steps]] table")
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ArrError(f"{path}: step names repeat ({', '.join(names)})")
    if not any(s.kind in ("train", "low-rank") for s in steps):
        raise ArrError(f"{path}: a recipe must make a model (a train or low-rank step)")
    return Recipe(path.stem, path, str(payload.get("description", "")), payload.get("base"), steps,
                  hashlib.sha256(raw).hexdigest())


def _step(path: Path, position: int, table: Any) -> Step:
    if not isinstance(table, dict):
        raise ArrError(f"{path}: step {position + 1} is not a table")
    settings = dict(table)
    name, kind = settings.pop("name", None), settings.pop("kind", None)
    if not isinstance(name, str):
        raise ArrError(f"{path}: step {position + 1} has no name")
    validate_name(name)
    if kind not in KINDS:
        raise ArrError(f"{path}: step {name!r} has kind {kind!r}; use {', '.join(KINDS)}")
    if kind == "data" and settings.get("builder") not in DATA_STEPS:
        raise ArrError(f"{path}: data step {name!r} needs a builder: {', '.join(DATA_STEPS)}")
    if kind == "low-rank" and not isinstance(settings.get("rank"), int):
        raise ArrError(f"{path}: low-rank step {name!r} needs a whole-number rank")
    return Step(name, kind, settings)


# ----------------------------------------------------------------------------- planning

@dataclass
class Plan:
    """A recipe made concrete for one run: paths substituted, flags applied, every input checked."""

    recipe: Recipe
    name: str
    run_dir: Path
    steps: list[Step]  # with their final settings
    base: str


def plan_recipe(recipe: Recipe, name: str, *, data: Path | None = None, output_dir: Path | None = None,
                base: str | None = None, scale: float | None = None, flags: dict[str, Any] | None = None) -> Plan:
    """Substitute `{data}` and `{run}`, apply `scale` and the command line's run settings to every
    training step, build each step's settings as they will run, and check that every input exists
    (or is an earlier step's output) — all before any model loads."""
    validate_name(name)
    if scale is not None and not 0 < scale <= 1:
        raise ArrError("--scale must be in (0, 1]: a share of each training step's steps and rows")
    flags = flags or {}
    refused = sorted(set(flags) - set(RUN_SETTINGS) - set(STAGE_NAMES))
    refused += sorted({f"{key} (a stage setting)" for stage in STAGE_NAMES for key in flags.get(stage, {}) if key != "max_steps"})
    if refused:
        raise ArrError(f"with --recipe, the recipe sets what each step trains; only where and how it runs may "
                       f"come from flags ({', '.join(RUN_SETTINGS)}, --max-steps), not {', '.join(refused)}")
    run_dir = Path(output_dir or Path("runs") / name)
    text = json.dumps([dataclasses.asdict(s) for s in recipe.steps])
    if "{data}" in text and data is None:
        raise ArrError(f"recipe {recipe.name!r} reads its data from --data (a folder such as the one "
                       "`arr data debian-desc data/debian-desc --fetch` builds); pass --data DIR")
    first = base or recipe.base
    substitutions = {"{data}": str(data) if data else "", "{run}": str(run_dir), "{base}": first or ""}
    steps, produced = [], set()
    for step in recipe.steps:
        settings = json.loads(_substitute(json.dumps(step.settings), substitutions))
        if step.kind == "train":
            settings = _train_settings(step, settings, scale, flags)
        elif step.kind == "data" and DATA_STEPS[settings["builder"]].uses_registry and "device" in flags:
            settings["device"] = flags["device"]  # a step that loads a model runs where the training does
        _check_inputs(step, settings, step.settings, produced)
        if settings.get("output"):
            produced.add(str(settings["output"]))
        steps.append(Step(step.name, step.kind, settings))
    first_model = next(s for s in steps if s.kind != "data")
    if first is None and (first_model.kind == "low-rank" or "base" not in first_model.settings):
        raise ArrError(f"recipe {recipe.name!r} names no base to start from; pass --base")
    return Plan(recipe, name, run_dir, steps, first or "")


def _substitute(text: str, substitutions: dict[str, str]) -> str:
    for key, value in substitutions.items():
        text = text.replace(key, json.dumps(value)[1:-1])  # inside a JSON string
    return text


def _train_settings(step: Step, settings: dict, scale: float | None, flags: dict) -> dict:
    """The step's `arr train` settings with the run settings from the command line, scaled, checked
    by building its TrainConfig (with a stand-in name and base)."""
    settings = nest_stage_settings(settings)
    for key, value in flags.items():
        settings[key] = {**settings.get(key, {}), **value} if key in STAGE_NAMES else value
    if scale is not None:
        for stage in STAGE_NAMES:
            table = dict(settings.get(stage, {}))
            for key in ("max_steps", "examples"):
                if isinstance(table.get(key), int) and table[key] > 0:
                    table[key] = max(1, round(table[key] * scale))
            settings[stage] = table
        for key in ("eval_steps", "save_steps"):
            if isinstance(settings.get(key), int):
                settings[key] = max(1, round(settings[key] * scale))
    for key in ("name", "output_dir", "resume", "overwrite"):
        if key in settings:
            raise ArrError(f"step {step.name!r}: {key} is the recipe's to set, not a step's")
    try:
        TrainConfig(**apply_preset({**settings, "name": "check", "base": settings.get("base", "check")}))
    except TypeError as exc:
        raise ArrError(f"step {step.name!r}: {exc}") from None
    except ArrError as exc:
        raise ArrError(f"step {step.name!r}: {exc}") from None
    return settings


_FILE_SUFFIXES = (".jsonl", ".gz", ".json", ".csv", ".tsv", ".parquet", ".txt")


def _check_inputs(step: Step, settings: dict, written: dict, produced: set[str]) -> None:
    """Each input must exist or be an earlier step's output; a name that is neither a path the recipe
    wrote with `{data}`/`{run}` nor looks like a file may be a Hub dataset id or a BEIR name."""
    names = DATA_STEPS[settings["builder"]].inputs if step.kind == "data" else TRAIN_INPUTS if step.kind == "train" else ()
    for key in names:
        value = settings.get(key)
        if value is None or Path(str(value)).exists() or any(str(value) == p or str(value).startswith(p + "/") for p in produced):
            continue  # there, or an earlier step's output (or a file inside the folder it writes)
        original = str(written.get(key, value))
        if "{data}" in original or "{run}" in original or original.startswith(("/", ".", "~")) or original.endswith(_FILE_SUFFIXES):
            raise ArrError(f"step {step.name!r}: its {key} {value} does not exist (and no earlier step writes it)")


# ----------------------------------------------------------------------------- running

class RunRegistry(Registry):
    """The run folder's registry of intermediate models, over the user's (entries not found here
    are looked up there; only intermediates are written here)."""

    def __init__(self, run_dir: Path, parent: Registry):
        super().__init__(home=run_dir / "registry")
        self.parent = parent

    def names(self) -> list[str]:
        own = super().names()
        return own + [n for n in self.parent.names() if n not in own]

    def get(self, name: str) -> ModelEntry:
        return super().get(name) if (self.entries_dir / f"{name}.json").is_file() else self.parent.get(name)


@dataclass
class RecipeResult:
    entry: ModelEntry | None  # the registered model (None when --until stopped before the end)
    run_dir: Path
    ran: list[str]
    skipped: list[str]
    stopped_after: str | None = None


def run_recipe(plan: Plan, registry: Registry | None = None, *, until: str | None = None, start: str | None = None,
               overwrite: bool = False, show_progress: bool = False) -> RecipeResult:
    """Run the plan's steps in order, skipping those recorded as done with the same settings;
    `start` runs again from that step, `until` stops after it. Registers the last model as the
    plan's name (with `overwrite`, over an existing entry)."""
    registry = registry or Registry()
    last = plan.recipe.index(until) if until else len(plan.steps) - 1
    first = plan.recipe.index(start) if start else 0
    if first > last:
        raise ArrError(f"--from {start} comes after --until {until}")
    if plan.name in registry.names() and not overwrite and last == len(plan.steps) - 1:
        raise ArrError(f"a model named {plan.name!r} is already registered; choose another --name or pass --overwrite")
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    done = _read_done(plan.run_dir)
    local = RunRegistry(plan.run_dir, registry)
    if start:
        _forget_from(plan, first, done, local)
    current, ran, skipped = plan.base, [], []
    for step in plan.steps[: last + 1]:
        record = done.get(step.name)
        if record is not None and step.kind == "data" and not Path(step.settings["output"]).exists():
            record = None  # its output was removed since: made again
        if record is not None:
            if _what_it_trains(record["settings"]) != _what_it_trains(json.loads(json.dumps(step.settings))):
                raise ArrError(f"step {step.name!r} ran with other settings than the recipe now gives it; pass "
                               f"--from {step.name} to run it (and the steps after it) again")
            current = record.get("model", current)
            skipped.append(step.name)
            continue
        started = time.perf_counter()
        outcome = _run_step(plan, step, current, local, show_progress)
        current = outcome.get("model", current)
        done[step.name] = {"kind": step.kind, "settings": step.settings, "seconds": round(time.perf_counter() - started, 1),
                           **outcome}
        write_json_atomic(plan.run_dir / STEPS_FILE, {"recipe": plan.recipe.name, "steps": done})
        ran.append(step.name)
    if last < len(plan.steps) - 1:
        return RecipeResult(None, plan.run_dir, ran, skipped, stopped_after=plan.steps[last].name)
    entry = _register_final(plan, local.get(current), local, registry, done, overwrite)
    return RecipeResult(entry, plan.run_dir, ran, skipped)


def _what_it_trains(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in RUN_SETTINGS}


def _read_done(run_dir: Path) -> dict[str, dict]:
    path = run_dir / STEPS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))["steps"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArrError(f"{path} is damaged ({exc}); remove it to run every step again") from None


def _forget_from(plan: Plan, first: int, done: dict[str, dict], local: RunRegistry) -> None:
    """--from: the steps from `first` on run again from scratch (their folders and models removed)."""
    for step in plan.steps[first:]:
        done.pop(step.name, None)
        shutil.rmtree(plan.run_dir / step.name, ignore_errors=True)
        model = f"{plan.name}.{step.name}"
        if (local.entries_dir / f"{model}.json").is_file():
            local.remove(model)
    write_json_atomic(plan.run_dir / STEPS_FILE, {"recipe": plan.recipe.name, "steps": done})


def _run_step(plan: Plan, step: Step, current: str, local: RunRegistry, show_progress: bool) -> dict:
    log.info("recipe %s: step %s (%s)", plan.recipe.name, step.name, step.kind)
    if step.kind == "data":
        settings = dict(step.settings)
        builder = DATA_STEPS[settings.pop("builder")]
        output = Path(settings.pop("output"))
        if builder.uses_registry:
            settings["registry"] = local
        try:
            return {"output": str(output), "counts": builder.run(output=output, **settings)}
        except TypeError as exc:
            raise ArrError(f"step {step.name!r}: {exc}") from None
    model = f"{plan.name}.{step.name}"
    if step.kind == "low-rank":
        return {"model": _low_rank(local.get(current), model, step, plan.run_dir / step.name, local)}
    from .run import train

    settings = {**step.settings, "base": step.settings.get("base", current), "name": model,
                "output_dir": str(plan.run_dir / step.name)}
    settings["resume"] = (plan.run_dir / step.name / "config.json").is_file()  # a step started before resumes
    settings["overwrite"] = settings["resume"]
    result = train(TrainConfig(**apply_preset(settings)), registry=local, show_progress=show_progress)
    return {"model": model, "final_losses": result.final_losses, "steps": result.steps}


def _low_rank(entry: ModelEntry, model: str, step: Step, folder: Path, local: RunRegistry) -> str:
    from ..export.arretrieve_folder import export_arretrieve_folder
    from ..registry.model_folder import import_model_folder

    shutil.rmtree(folder, ignore_errors=True)  # an export interrupted before its rename leaves nothing to keep
    export_arretrieve_folder(entry, folder, name=model, half=bool(step.settings.get("half", True)), registry=local,
                             low_rank=step.settings["rank"])
    local.add(import_model_folder(folder), overwrite=True)
    return model


def _register_final(plan: Plan, entry: ModelEntry, local: RunRegistry, registry: Registry, done: dict,
                    overwrite: bool) -> ModelEntry:
    """The last step's model as `plan.name`: its weights copied under the toolkit home (the run
    folder can go), its provenance with the recipe and every step."""
    from ..export.arretrieve_folder import export_arretrieve_folder
    from ..registry.model_folder import import_model_folder

    recipe = {"name": plan.recipe.name, "sha256": plan.recipe.sha256, "run_dir": str(plan.run_dir.resolve()),
              "steps": [{"name": s.name, "kind": s.kind, **{k: v for k, v in done[s.name].items() if k != "settings"},
                         "settings": s.settings} for s in plan.steps]}
    folder = registry.weights_dir(plan.name)
    if folder.exists():
        if not overwrite:
            raise ArrError(f"{folder} already holds weights of a model named {plan.name!r}; pass --overwrite")
        shutil.rmtree(folder)
    final = replace(entry, provenance={**entry.provenance, "recipe": recipe})
    export_arretrieve_folder(final, folder, name=plan.name, half=False, registry=local)
    registered = import_model_folder(folder)
    registry.add(registered, overwrite=overwrite)
    return registered

