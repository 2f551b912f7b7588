"""Trained tokens per second of both AutoRegEmbed stages: current main's batching vs length-grouped
batches, side by side in one run, against the machine's measured matrix-multiply peak.

    python benchmarks/train_throughput.py --compression ../shared/data/debian-desc/train/compression.jsonl.gz \
        --triplets runs/data/synopsis-triplets.jsonl --steps 6 --batch-size 8

A step is forward, backward and the AdamW update of LoRA (r 16) + compress rows, on the batches
HF Trainer's sampler gives (random, as main does; or `group_by_length`), from the same rows and
seed. Trained tokens are real tokens (encoder inputs + decoder targets, no padding). The model
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
    parser.add_argument("--compression", required=True)
    parser.add_argument("--triplets", required=True, help="stage-2 rows in the paper's orientation (synopsis_triplets.py)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per variant and stage (after one warm-up)")
    parser.add_argument("--rows", type=int, default=400, help="rows the sampler draws batches from")
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    from transformers.trainer_pt_utils import LengthGroupedSampler

    from arretrieve.runtime import dtype_name, resolve_device, resolve_dtype
    from arretrieve.registry import Registry
    from arretrieve.training.batches import CompressionCollator, CompressionSet, TripletCollator, TripletSet
    from arretrieve.training.config import TrainConfig
    from arretrieve.training.data import load_compression_data, load_triplets
    from arretrieve.training.model_setup import build_trainable
    from arretrieve.training.steps import alignment_step, compression_step

    torch.set_flush_denormal(True)
    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    entry = Registry().get(args.model)
    recipe_prompts = {"i_next": "{text}\nSummarize this text in one line.\n", "i_self": "{text}\nThis sentence means in one word: \u201c\n"}
    config = TrainConfig(name="bench", lora_r=16, lora_alpha=32)
    model = build_trainable(entry, config, dtype).to(device).train()
    body = model._base_lm.get_decoder()
    body_params = sum(p.numel() for n, p in body.named_parameters() if "embed_tokens" not in n)
    head_params = model._base_lm.get_output_embeddings().weight.numel()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    compression, _ = load_compression_data(args.compression, config.fields, args.rows)
    stage1 = CompressionSet(model, compression, config.max_target_length)
    triplets, _ = load_triplets(args.triplets, config.fields, 1, args.rows)
    stage2 = TripletSet(model, triplets, recipe_prompts["i_next"], recipe_prompts["i_self"], config.max_target_length)
    stage2.reference = torch.full((len(stage2), 2), -30.0)  # inputs to the loss; they do not change its cost

    def tokens(batch: dict, stage: str) -> tuple[int, int]:
        """(encoder + decoder tokens, scored target tokens), real tokens only."""
        if stage == "compress":
            return int(batch["lengths"].sum() + batch["target_lengths"].sum()), int(batch["target_lengths"].sum())
        size = batch["encoder_ids"].shape[0] // 2
        targets = int(batch["target_lengths"].sum())  # pos twice (e_q and e_pos) + negatives
        return int(batch["encoder_lengths"].sum()) + targets + 5 * (2 + 1) * size, targets

    peak = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    results = []
    for stage, dataset, collate, step in (("compress", stage1, CompressionCollator(model.pad_id), compression_step),
                                           ("align", stage2, TripletCollator(model.pad_id), alignment_step)):
        orders = {}
        for variant in ("random (main)", "group_by_length"):
            torch.manual_seed(42)
            if variant == "group_by_length":
                orders[variant] = list(LengthGroupedSampler(args.batch_size, dataset=dataset, lengths=dataset.lengths))
            else:
                orders[variant] = torch.randperm(len(dataset)).tolist()
        timings = {variant: [] for variant in orders}
        counted = {variant: [0, 0] for variant in orders}
        # Alternate the variants step by step so drift on a shared machine hits both alike.
        for index in range(args.steps + 1):
            for variant, order in orders.items():
                rows = order[index * args.batch_size : (index + 1) * args.batch_size]
                batch = {k: v.to(device) for k, v in collate([dataset[i] for i in rows]).items()}
                started = time.perf_counter()
                with autocast:
                    loss = step(model, batch, config)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if index:  # the first step of each variant warms up
                    timings[variant].append(time.perf_counter() - started)
                    all_tokens, scored = tokens(batch, stage)
                    counted[variant][0] += all_tokens
                    counted[variant][1] += scored
        for variant in orders:
            seconds = sum(timings[variant])
            flops = 6 * body_params * counted[variant][0] + 6 * head_params * counted[variant][1]
            results.append({"stage": stage, "variant": variant, "steps": args.steps, "batch_size": args.batch_size,
                            "median_step_s": round(statistics.median(timings[variant]), 2),
                            "trained_tokens_per_s": round(counted[variant][0] / seconds, 1),
                            "model_gflops_per_s": round(flops / seconds / 1e9, 1),
                            "fraction_of_peak": round(flops / seconds / peak[dtype_name(dtype)], 3)})
        base, grouped = (r["trained_tokens_per_s"] for r in results[-2:])
        results[-1]["speedup_vs_main"] = round(grouped / base, 2)
    print(json.dumps({"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "dtype": dtype_name(dtype), "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()},
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
