"""The paper's central comparison on our data, reproducibly: one recipe (by default the settings the
built-in pure AutoRegEmbed model was trained with, `benchmarks/replicate-lora.toml`: same base, data,
prompts, LoRA and step budget) trained up to six ways,

  (a) AutoRegEmbed, both stages, reference form `code`         → PREFIX-are
  (b) stage 1 only (information compression)                   → PREFIX-stage1
  (c) InfoNCE contrastive baseline (the paper's fair baseline) → PREFIX-infonce
  (d) AutoRegEmbed with the `paper` reference form             → PREFIX-are-paper
  (e) stage 1, then alignment + λ·InfoNCE (autoregembed+contrastive) → PREFIX-hybrid
  (f) stage 1, then InfoNCE + the compression term (contrastive+compression, on the
      retrieval triplets, both reconstruction terms at weight 1.0) → PREFIX-compression

then evaluated with `arr beir-eval` next to the untrained base, the MiniLM baseline and BM25.

(a), (b), (d), (e) and (f) share one stage-1 run, as their stage 1 is identical. (c) trains on the
retrieval-oriented triplets (synopsis query, description positive and hard negative, plus
in-batch negatives) for as many steps as (a) takes in both stages, with the recipe's batch size,
stage-2 learning rate and prompts. Models already registered under these names are reused, so an
interrupted study resumes.

    python benchmarks/synopsis_triplets.py data/debian-desc/train runs/data/synopsis-triplets.jsonl
    python benchmarks/replicate.py --data data/debian-desc --split dev

Use `--split dev` while choosing settings and `--split test` once for the reported table.

At the default model's budget (full fine-tuning, stage 1 on synopsis rows interleaved with
reconstruction rows, 200 stage-2 steps; `benchmarks/replicate-full.toml`):

    python benchmarks/reconstruction_rows.py data/debian-desc/train/compression.jsonl.gz \
        runs/data/compression-reconstruction.jsonl --every 2
    python benchmarks/replicate.py --data data/debian-desc --split dev \
        --recipe benchmarks/replicate-full.toml --prefix study-full \
        --variants stage1,are,hybrid,compression,infonce
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

RECIPE = Path(__file__).resolve().parent / "replicate-lora.toml"
VARIANTS = ("are", "stage1", "infonce", "are-paper", "hybrid", "compression")  # the table's order


def plans(recipe: dict, data: Path, names: dict[str, str]) -> dict[str, dict]:
    """The training settings of each variant, all derived from the one recipe."""
    total_steps = recipe["compress"]["max_steps"] + recipe["align"]["max_steps"]
    retrieval_triplets = str(data / "train" / "triplets.jsonl.gz")
    # The state scale is stage 1's (stage 2 loads it with the weights); with an eval set, stage 2
    # keeps its best retrieval, as the default's recipes do.
    stage2 = {**recipe, "state_scale": False, **({"keep_best": "ndcg@10"} if recipe.get("eval_data") else {})}
    return {
        "stage1": {**recipe, "stage": "compress"},
        "are": {**stage2, "base": names["stage1"], "stage": "align", "reference_form": "code"},
        "are-paper": {**stage2, "base": names["stage1"], "stage": "align", "reference_form": "paper"},
        "hybrid": {**stage2, "base": names["stage1"], "stage": "align", "objective": "autoregembed+contrastive"},
        # The default's last step: InfoNCE, the query generated from the document's states, and
        # both texts rebuilt from their own states.
        "compression": {**stage2, "base": names["stage1"], "stage": "align", "objective": "contrastive+compression",
                        "alignment_data": retrieval_triplets, "reconstruction_weight": 1.0,
                        "query_reconstruction_weight": 1.0, "max_target_length": 96},
        "infonce": {**stage2, "objective": "contrastive", "stage": "all",
                    "alignment_data": retrieval_triplets,
                    "align": {**recipe["align"], "max_steps": total_steps, "examples": total_steps * recipe["align"]["batch_size"]}},
    }


def train_arm(config, home: Path) -> dict:
    """One variant's training, run in a process of its own (`main`), so the memory a full fine-tuning
    leaves allocated is returned before the next one: in one process the stage-2 arms started at
    17.6 GB resident after stage 1, and two trainings at once exceeded a 24 GiB machine."""
    from arretrieve.registry import Registry
    from arretrieve.training import train

    result = train(config, registry=Registry(home), show_progress=True)
    return {"losses": result.final_losses, "steps": result.steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="debian-desc folder (train/, dev/, test/)")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--recipe", type=Path, default=RECIPE)
    parser.add_argument("--prefix", default="study")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which variants to train and evaluate (comma-separated)")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--results", type=Path, default=Path("results/replicate"))
    parser.add_argument("--train-only", action="store_true", help="train (or reuse) the models, evaluate nothing")
    parser.add_argument("--baselines", default="smollm2-135m,all-minilm-l6-v2,bm25", help="extra models for the table")
    args = parser.parse_args()

    import tomllib

    from arretrieve.evaluation import markdown_table, run_beir_eval
    from arretrieve.registry import Registry
    from arretrieve.training import TrainConfig
    from arretrieve.training.config import nest_stage_settings

    registry = Registry()
    wanted = [v for v in args.variants.split(",") if v]
    unknown = set(wanted) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    recipe = nest_stage_settings(tomllib.loads(args.recipe.read_text(encoding="utf-8")))
    names = {key: f"{args.prefix}-{key}" for key in VARIANTS}
    variant_plans = plans(recipe, args.data, names)
    if any(variant_plans[v].get("base") == names["stage1"] for v in wanted):
        wanted.append("stage1")  # their stage 1 (plans puts it first)
    for key, settings in variant_plans.items():
        if key not in wanted:
            continue
        if names[key] in registry.names() and registry.get(names[key]).provenance.get("trained_by"):
            print(json.dumps({"model": names[key], "status": "already trained, reused"}), flush=True)
            continue
        started = time.perf_counter()
        config = TrainConfig(**{**settings, "name": names[key], "output_dir": str(args.runs / names[key]), "resume": True})
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            trained = pool.apply(train_arm, (config, registry.home))
        print(json.dumps({"model": names[key], "seconds": round(time.perf_counter() - started, 1), **trained}), flush=True)
    if args.train_only:
        return
    order = [names[v] for v in VARIANTS if v in wanted]
    models = order + [m for m in args.baselines.split(",") if m]
    records = run_beir_eval([str(args.data / args.split)], models, split=args.split, output=args.results)
    print(markdown_table(records))
    print(markdown_table(records, "Recall@10"))
    # Training wall times come from each model's provenance, so a table evaluated later still shows them.
    summary = {"split": args.split, "recipe": str(args.recipe),
               "training_seconds": {name: registry.get(name).provenance.get("seconds", {}) for name in order},
               "ndcg@10": {r.model: r.metrics["NDCG@10"] for r in records}}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"summary-{args.split}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
