"""Trained tokens per second of both AutoRegEmbed stages: the batching main had before issue 13
(random order) vs length-grouped batches, optionally larger, and the same with compiled layers,
side by side in one run, against the machine's measured matrix-multiply peak.

    python benchmarks/train_throughput.py --compression data/debian-desc/train/compression.jsonl.gz \
        --triplets runs/data/synopsis-triplets.jsonl --steps 4 --batch-size 8 --grouped-batch-size 16 --compiled

`--infonce TRIPLETS` measures the InfoNCE objective instead: batches carrying every decoder target
(as every objective's batches did before the objectives had records, issue 36) against batches
carrying only what InfoNCE reads, collation and tokenisation included, in one run:

    python benchmarks/train_throughput.py --infonce data/debian-desc/train/triplets.jsonl.gz --steps 6

A step is forward, backward and the AdamW update of LoRA (r 16) + compress rows. Before: random
batches of `--batch-size` with LoRA dropout `--lora-dropout`, as main trained until issue 13.
After: HF Trainer's `group_by_length` batches of `--grouped-batch-size` with
`--grouped-lora-dropout`; with `--compiled`, also those batches with every transformer layer
compiled (`compile_layers`), whose warm-up steps (`--warmup`) pay the compilation and are timed
apart. All from the same rows and seed, each variant with its own model.
Larger batches give the matrix units larger matrices; LoRA dropout draws a random mask over every
adapted layer's input (210 `bernoulli_` calls, about a quarter of a stage-1 step on AMX).
Trained tokens are real tokens (encoder inputs + decoder targets, no padding). The model
FLOPs are 6 x (non-embedding parameters) per encoder and decoder token plus 6 x (LM-head
parameters) per scored target token; "of peak" divides their rate by the fp32 / bf16 matmul rate
measured here on 2048-square matrices (the dtype the run trains in is the one that counts).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from functools import partial

import torch


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compression")
    parser.add_argument("--triplets", help="stage-2 rows in the paper's orientation (synopsis_triplets.py)")
    parser.add_argument("--infonce", metavar="TRIPLETS", help="measure InfoNCE batches with and without decoder targets")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step before: random order, as main trained")
    parser.add_argument("--grouped-batch-size", type=int, default=None,
                        help="rows per step after: group_by_length batches (default: --batch-size)")
    parser.add_argument("--lora-dropout", type=float, default=0.1, help="LoRA dropout before (the default until 2026-12-03)")
    parser.add_argument("--grouped-lora-dropout", type=float, default=0.0, help="LoRA dropout after")
    parser.add_argument("--steps", type=int, default=6, help="measured steps per variant and stage (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured first steps per variant and stage")
    parser.add_argument("--compiled", action="store_true", help="add the grouped variant with compiled layers")
    parser.add_argument("--rows", type=int, default=800, help="rows the sampler draws batches from")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()
    if args.infonce:
        return infonce_batches(args)
    if not (args.compression and args.triplets):
        parser.error("--compression and --triplets are required (or --infonce)")

    from transformers.trainer_pt_utils import LengthGroupedSampler

    from arretrieve.runtime import dtype_name, resolve_device, resolve_dtype
    from arretrieve.registry import Registry
    from arretrieve.training.batches import CompressionCollator, CompressionSet, TripletCollator, TripletSet
    from arretrieve.training.config import TrainConfig
    from arretrieve.training.data import load_compression_data, load_triplets
    from arretrieve.training.model_setup import build_trainable
    from arretrieve.training.objectives import COMPRESSION, batch_needs, objective
    from arretrieve.training.steps import stage_loss

    torch.set_flush_denormal(True)
    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    entry = Registry().get(args.model)
    recipe_prompts = {"i_next": "{text}\nSummarize this text in one line.\n", "i_self": "{text}\nThis sentence means in one word: \u201c\n"}
    grouped = {"batch_size": args.grouped_batch_size or args.batch_size, "lora_dropout": args.grouped_lora_dropout,
               "compile_layers": False}
    variants = {"random (main)": {"batch_size": args.batch_size, "lora_dropout": args.lora_dropout, "compile_layers": False},
                "group_by_length": grouped}
    if args.compiled:
        variants["group_by_length + compiled layers"] = {**grouped, "compile_layers": True}
    config = TrainConfig(name="bench", lora_r=16, lora_alpha=32)
    models, optimizers = {}, {}
    for variant, settings in variants.items():
        models[variant] = build_trainable(entry, replace(config, lora_dropout=settings["lora_dropout"],
                                                         compile_layers=settings["compile_layers"]), dtype).to(device).train()
        optimizers[variant] = torch.optim.AdamW([p for p in models[variant].parameters() if p.requires_grad], lr=1e-5)
    model = models["random (main)"]  # tokenisation and sizes are the same for both
    body = model._base_lm.get_decoder()
    body_params = sum(p.numel() for n, p in body.named_parameters() if "embed_tokens" not in n)
    head_params = model._base_lm.get_output_embeddings().weight.numel()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    compression, _ = load_compression_data(args.compression, config.fields, args.rows)
    stage1 = CompressionSet(model, compression, config.max_target_length)
    triplets, _ = load_triplets(args.triplets, config.fields, 1, args.rows)
    alignment = objective("autoregembed").stage("align")
    stage2 = TripletSet(model, triplets, recipe_prompts["i_next"], recipe_prompts["i_self"], config.max_target_length,
                        batch_needs(alignment, config))
    stage2.reference = torch.full((len(stage2), 2), -30.0)  # inputs to the loss; they do not change its cost

    def tokens(batch: dict, stage: str) -> tuple[int, int]:
        """(encoder + decoder tokens, scored target tokens), real tokens only."""
        if stage == "compress":
            return int(batch["lengths"].sum() + batch["target_lengths"].sum()), int(batch["target_lengths"].sum())
        size = batch["encoder_ids"].shape[0] // 2
        positives = int(batch["target_lengths"][:size].sum())
        targets = int(batch["target_lengths"].sum()) + positives  # pos twice (e_q and e_pos) + negatives
        return int(batch["encoder_lengths"].sum()) + targets + 5 * (2 + 1) * size, targets

    # bf16 only where the run trains in it: emulated on CPUs without native bf16, it runs for minutes.
    peak = {"float32": matmul_peak(torch.float32)}
    if dtype == torch.bfloat16:
        peak["bfloat16"] = matmul_peak(torch.bfloat16)
    results = []
    for stage, dataset, collate, step in (("compress", stage1, CompressionCollator(model.pad_id), partial(stage_loss, COMPRESSION)),
                                           ("align", stage2, TripletCollator(model.pad_id), partial(stage_loss, alignment))):
        # The sampler sorts each group of 50 batches longest first, so the first batches of a
        # grouped order are the longest; measure batches spread evenly over each whole order instead.
        measured = {}
        for variant, settings in variants.items():
            size = settings["batch_size"]
            torch.manual_seed(42)
            if variant != "random (main)":
                order = list(LengthGroupedSampler(size, dataset=dataset, lengths=dataset.lengths))
            else:
                order = torch.randperm(len(dataset)).tolist()
            batches = [order[start : start + size] for start in range(0, len(order) - size + 1, size)]
            if len(batches) < args.steps + args.warmup:
                parser.error(f"--rows {args.rows} gives {len(batches)} batches of {size}; need {args.steps + args.warmup}")
            stride = len(batches) / (args.steps + args.warmup)
            measured[variant] = [batches[int(i * stride)] for i in range(args.steps + args.warmup)]
        timings = {variant: [] for variant in variants}
        warmup_seconds = {variant: 0.0 for variant in variants}
        counted = {variant: [0, 0] for variant in variants}
        # Alternate the variants step by step so drift on a shared machine hits both alike.
        for index in range(args.steps + args.warmup):
            for variant in variants:
                batch = {k: v.to(device) for k, v in collate([dataset[i] for i in measured[variant][index]]).items()}
                started = time.perf_counter()
                with autocast:
                    loss = step(models[variant], batch, config)
                loss.backward()
                optimizers[variant].step()
                optimizers[variant].zero_grad(set_to_none=True)
                if index < args.warmup:  # the first steps warm up (and compile)
                    warmup_seconds[variant] += time.perf_counter() - started
                else:
                    timings[variant].append(time.perf_counter() - started)
                    all_tokens, scored = tokens(batch, stage)
                    counted[variant][0] += all_tokens
                    counted[variant][1] += scored
        for variant, settings in variants.items():
            seconds = sum(timings[variant])
            flops = 6 * body_params * counted[variant][0] + 6 * head_params * counted[variant][1]
            results.append({"stage": stage, "variant": variant, "steps": args.steps, **settings,
                            "warmup_s": round(warmup_seconds[variant], 1),
                            "median_step_s": round(statistics.median(timings[variant]), 2),
                            "trained_tokens_per_s": round(counted[variant][0] / seconds, 1),
                            "model_gflops_per_s": round(flops / seconds / 1e9, 1),
                            "fraction_of_peak": round(flops / seconds / peak[dtype_name(dtype)], 3)})
        stage_results = results[-len(variants):]
        for result in stage_results[1:]:
            result["speedup_vs_main"] = round(result["trained_tokens_per_s"] / stage_results[0]["trained_tokens_per_s"], 2)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "dtype": dtype_name(dtype), "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()},
                      "results": results}, indent=1))


def infonce_batches(args) -> None:
    """InfoNCE steps (collate, forward, backward, AdamW) from batches that carry every decoder target
    against batches that carry what InfoNCE reads, alternated step by step on the same rows."""
    from arretrieve.registry import Registry
    from arretrieve.runtime import dtype_name, resolve_device, resolve_dtype
    from arretrieve.training.batches import TripletCollator, TripletSet
    from arretrieve.training.config import TrainConfig
    from arretrieve.training.data import load_triplets
    from arretrieve.training.model_setup import build_trainable
    from arretrieve.training.objectives import OBJECTIVES, batch_needs, objective
    from arretrieve.training.steps import stage_loss

    torch.set_flush_denormal(True)
    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    entry = Registry().get(args.model)
    config = TrainConfig(name="bench", objective="contrastive", lora=False, max_length=384)
    stage = objective("contrastive").stage("align")
    every = frozenset(need for o in OBJECTIVES for s in o.stages for term in s.terms for need in term.needs)
    variants = {"every decoder target (before)": every, "what InfoNCE reads (after)": batch_needs(stage, config)}
    model = build_trainable(entry, config, dtype).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    size = args.batch_size
    triplets, _ = load_triplets(args.infonce, config.fields, 1, size * (args.steps + args.warmup))
    datasets, tokenise_s = {}, {}
    for variant, needs in variants.items():
        started = time.perf_counter()
        datasets[variant] = TripletSet(model, triplets, entry.prompts["query"], entry.prompts["document"],
                                       config.max_target_length, needs)
        tokenise_s[variant] = time.perf_counter() - started
    collate = TripletCollator(model.pad_id)
    timings = {variant: [] for variant in variants}
    padded = {variant: 0 for variant in variants}
    for index in range(args.steps + args.warmup):
        rows = range(index * size, (index + 1) * size)
        for variant in variants:
            started = time.perf_counter()
            batch = {k: v.to(device) for k, v in collate([datasets[variant][i] for i in rows]).items()}
            with autocast:
                loss = stage_loss(stage, model, batch, config)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index >= args.warmup:
                timings[variant].append(time.perf_counter() - started)
                padded[variant] += sum(int(v.numel()) for k, v in batch.items() if k.endswith("_ids") or k.endswith("targets"))
    results = [{"variant": variant, "batch_keys": sorted(collate([datasets[variant][0]])),
                "tokenise_s": round(tokenise_s[variant], 2), "median_step_s": round(statistics.median(timings[variant]), 3),
                "padded_tokens_per_step": padded[variant] // args.steps} for variant in variants]
    before, after = results
    after["step_speedup"] = round(before["median_step_s"] / after["median_step_s"], 3)
    after["tokenise_speedup"] = round(before["tokenise_s"] / after["tokenise_s"], 2)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "dtype": dtype_name(dtype), "batch_size": size, "steps": args.steps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
