"""Which prompts should a trained AutoRegEmbed model be indexed and queried with? Evaluates one
registered model under prompt variants with `arr beir-eval`'s code (use a dev set: this is a choice).

  reference: the reference code's evaluation prompts (one-word prompt for queries, `Passage:` for documents)
  training:  the prompts stage 2 trained with (I_next for queries, I_self for documents)
  summary:   queries as in `reference`, documents with a stage-1 style instruction

    python benchmarks/prompt_choice.py --model study-are --data data/debian-desc/dev --split dev

Each variant is registered as a user entry `<model>-prompts-<variant>` (same weights), so a chosen
variant can be exported or shipped as it is.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

VARIANTS = ("reference", "training", "summary")


def variant_prompts(prompts: dict[str, str], variant: str) -> dict[str, str]:
    if variant == "reference":
        return dict(prompts)
    if variant == "training":
        return {**prompts, "query": prompts["i_next"], "document": prompts["i_self"]}
    return {**prompts, "document": "{text}\nWrite a one-line summary of this package description.\n"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="a BEIR folder (use dev)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--results", type=Path, default=Path("results/prompt-choice"))
    args = parser.parse_args()

    from arretrieve.evaluation import markdown_table, run_beir_eval
    from arretrieve.registry import Registry

    registry = Registry()
    entry = registry.get(args.model)
    names = []
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        name = f"{args.model}-prompts-{variant}"
        registry.add(replace(entry, name=name, prompts=variant_prompts(entry.prompts, variant), builtin=False),
                     overwrite=True)
        names.append(name)
    records = run_beir_eval([args.data], names, split=args.split, output=args.results, registry=registry)
    print(markdown_table(records))
    print(json.dumps({r.model: r.metrics["NDCG@10"] for r in records}, indent=2))


if __name__ == "__main__":
    main()
