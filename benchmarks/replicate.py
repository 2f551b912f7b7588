"""The paper's central comparison on our data, reproducibly, with the same base, data, prompts and
step budget:

  (a) AutoRegEmbed, both stages, reference form `code`      → PREFIX-are
  (b) stage 1 only (information compression)                → PREFIX-stage1
  (c) InfoNCE contrastive baseline (the paper's fair baseline) → PREFIX-infonce
  (d) AutoRegEmbed with the `paper` reference form          → PREFIX-are-paper

(a), (b) and (d) share one stage-1 run, as their stage 1 is identical. (c) trains for the same
total number of steps as (a) (stage 1 + stage 2). Everything is then evaluated with
`arr beir-eval` next to the untrained base, the MiniLM baseline and BM25.

    python benchmarks/replicate.py --data ../shared/data/debian-desc --split dev \
        --compress-steps 150 --align-steps 130 --batch-size 8

Use `--split dev` while choosing settings and `--split test` once for the reported table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="debian-desc folder (train/, dev/, test/)")
    parser.add_argument("--split", choices=("dev", "test"), default="dev")
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--prefix", default="study")
    parser.add_argument("--compress-steps", type=int, default=150)
    parser.add_argument("--align-steps", type=int, default=130)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compress-lr", type=float, default=None, help="default: arr train's")
    parser.add_argument("--align-lr", type=float, default=None, help="default: arr train's (also the InfoNCE run's)")
    parser.add_argument("--beta", type=float, default=None,
                        help="stage-2 β (default: arr train's 0.1, set for short sentences; long targets need less)")
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA rank (alpha = 2r); 8 keeps an fp16 adapter near 5 MB")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--results", type=Path, default=Path("results/replicate"))
    parser.add_argument("--skip-training", action="store_true", help="only evaluate already registered models")
    parser.add_argument("--train-only", action="store_true", help="train (or reuse) the four models, evaluate nothing")
    parser.add_argument("--baselines", default="all-minilm-l6-v2,bm25", help="extra models for the table")
    args = parser.parse_args()

    from arretrieve.evaluation import markdown_table, run_beir_eval
    from arretrieve.registry import Registry
    from arretrieve.training import TrainConfig, train

    registry = Registry()
    names = {key: f"{args.prefix}-{key}" for key in ("stage1", "are", "are-paper", "infonce")}
    compression = str(args.data / "train" / "compression.jsonl.gz")
    triplets = str(args.data / "train" / "triplets.jsonl.gz")
    common = dict(compress_batch_size=args.batch_size, align_batch_size=args.batch_size, seed=args.seed,
                  compress_examples=args.compress_steps * args.batch_size, align_examples=args.align_steps * args.batch_size,
                  compress_max_steps=args.compress_steps, align_max_steps=args.align_steps, save_steps=50,
                  lora_r=args.lora_r, lora_alpha=2 * args.lora_r)
    common.update({k: v for k, v in (("compress_lr", args.compress_lr), ("align_lr", args.align_lr), ("beta", args.beta))
                   if v is not None})
    if not args.skip_training:
        plans = [
            ("stage1", dict(base=args.base, stage="compress", compression_data=compression)),
            ("are", dict(base=names["stage1"], stage="align", alignment_data=triplets, reference_form="code")),
            ("are-paper", dict(base=names["stage1"], stage="align", alignment_data=triplets, reference_form="paper")),
            ("infonce", dict(base=args.base, objective="contrastive", alignment_data=triplets,
                             align_max_steps=args.compress_steps + args.align_steps,
                             align_examples=(args.compress_steps + args.align_steps) * args.batch_size)),
        ]
        for key, settings in plans:
            started = time.perf_counter()
            config = TrainConfig(name=names[key], output_dir=str(args.runs / names[key]), resume=True,
                                 **{**common, **settings})
            if names[key] in registry.names() and registry.get(names[key]).provenance.get("trained_by"):
                print(json.dumps({"model": names[key], "status": "already trained, reused"}), flush=True)
                continue
            result = train(config, registry=registry, show_progress=True)
            print(json.dumps({"model": names[key], "seconds": round(time.perf_counter() - started, 1), "losses": result.final_losses,
                              "steps": result.steps}), flush=True)
    if args.train_only:
        return
    # Training wall times come from each model's provenance, so a table evaluated later still shows them.
    wall = {name: registry.get(name).provenance.get("seconds", {}) for name in names.values() if name in registry.names()}
    models = [names["are"], names["stage1"], names["infonce"], names["are-paper"], args.base]
    models += [m for m in args.baselines.split(",") if m]
    records = run_beir_eval([str(args.data / args.split)], models, split=args.split, output=args.results)
    print(markdown_table(records))
    print(markdown_table(records, "Recall@10"))
    summary = {"split": args.split, "training_seconds": wall,
               "ndcg@10": {r.model: r.metrics["NDCG@10"] for r in records}}
    (args.results / f"summary-{args.split}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
