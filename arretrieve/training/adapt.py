"""`arr adapt`: label-free adaptation of a model to a corpus, the shipped `adapt` recipe run on the
corpus alone (arretrieve/recipes/adapt.toml: pseudo-queries from the model's own decoder, BM25
negatives, InfoNCE with the compression and reconstruction terms, keep-best on held-back documents).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ArrError
from ..registry import Registry
from .recipe import Plan, RecipeResult, load_recipe, plan_recipe, run_recipe

RECIPE = "adapt"


def plan_adaptation(corpus: Path, name: str, base: str | None = None, *, registry: Registry | None = None,
                    output_dir: Path | None = None, scale: float | None = None,
                    flags: dict[str, Any] | None = None) -> Plan:
    """The adaptation's plan, checked before any model loads: the corpus is there and the base (the
    registry's default unless named) is an AutoRegEmbed model, whose decoder writes the queries."""
    registry = registry or Registry()
    if not Path(corpus).exists():
        raise ArrError(f"{corpus} does not exist: pass the corpus to adapt to (any format arr index reads)")
    entry = registry.resolve(base)
    if entry.kind != "autoregembed":
        raise ArrError(f"{entry.name!r} is a {entry.kind} model: adaptation needs an AutoRegEmbed model, whose "
                       "decoder writes the pseudo-queries")
    return plan_recipe(load_recipe(RECIPE), name, data=Path(corpus), output_dir=output_dir, base=entry.name,
                       scale=scale, flags=flags)


def adapt(corpus: Path, name: str, base: str | None = None, *, registry: Registry | None = None,
          output_dir: Path | None = None, until: str | None = None, start: str | None = None,
          scale: float | None = None, overwrite: bool = False, flags: dict[str, Any] | None = None,
          show_progress: bool = False) -> RecipeResult:
    """Adapt `base` to the documents of `corpus` and register the result as `name`; the same call
    again resumes an interrupted run."""
    registry = registry or Registry()
    plan = plan_adaptation(corpus, name, base, registry=registry, output_dir=output_dir, scale=scale, flags=flags)
    return run_recipe(plan, registry, until=until, start=start, overwrite=overwrite, show_progress=show_progress)
