"""Stage-2 step time: arr's batched passes vs the reference code's sequential pass structure.

Same model (LoRA on the registry base), same batches of real Debian triplets, same dtype, one
process; the two variants alternate batch by batch so drift hits both alike. A step is forward,
backward and the AdamW update. The reference scores are fixed numbers here: they are inputs to the
loss and do not change its cost.

    python benchmarks/train_step.py --triplets data/debian-desc/train/triplets.jsonl.gz \
        --batch-size 8 --steps 6
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triplets", required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="measured steps per variant (after one warm-up each)")
    parser.add_argument("--num-negatives", type=int, default=1)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    args = parser.parse_args()

    from arretrieve.runtime import dtype_name, resolve_device, resolve_dtype
    from arretrieve.registry import Registry
    from arretrieve.training.batches import TripletCollator, TripletSet
    from arretrieve.training.config import TrainConfig
    from arretrieve.training.data import load_triplets
    from arretrieve.training.model_setup import build_trainable
    from arretrieve.training.objectives import batch_needs, objective
    from arretrieve.training.steps import stage_loss

    torch.set_flush_denormal(True)
    entry = Registry().get(args.model)
    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    config = TrainConfig(name="bench", lora=not args.full, num_negatives=args.num_negatives)
    model = build_trainable(entry, config, dtype).to(device).train()
    count = args.batch_size * (args.steps + 1)
    triplets, _ = load_triplets(args.triplets, config.fields, args.num_negatives, limit=count)
    stage = objective(config.objective).stage("align")
    dataset = TripletSet(model, triplets, entry.prompts["i_next"], entry.prompts["i_self"], config.max_target_length,
                         batch_needs(stage, config))
    dataset.reference = torch.full((len(dataset), 1 + args.num_negatives), -50.0)
    collate = TripletCollator(model.pad_id)
    batches = [collate([dataset[i] for i in range(s, s + args.batch_size)]) for s in range(0, count, args.batch_size)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)

    def step(batch, passes):
        config.passes = passes
        batch = {k: v.to(device) for k, v in batch.items()}
        started = time.perf_counter()
        with autocast:
            loss = stage_loss(stage, model, batch, config)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    times = {"sequential": [], "batched": []}
    for number, batch in enumerate(batches):
        for passes in ("sequential", "batched") if number % 2 == 0 else ("batched", "sequential"):
            elapsed = step(batch, passes)
            if number > 0:  # batch 0 warms both up
                times[passes].append(elapsed)
    tokens = [int(b["encoder_lengths"].sum() + b["target_lengths"].sum()) for b in batches[1:]]
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": entry.name, "mode": "full" if args.full else "lora", "dtype": dtype_name(dtype), "device": str(device),
        "batch_size": args.batch_size, "negatives": args.num_negatives, "measured_steps": args.steps,
        "median_step_s": {k: round(v, 3) for k, v in medians.items()},
        "speedup_batched_over_sequential": round(medians["sequential"] / medians["batched"], 2),
        "real_tokens_per_step": round(statistics.mean(tokens)),
        "batched_real_tokens_per_s": round(statistics.mean(tokens) / medians["batched"], 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "threads": torch.get_num_threads(), "machine": platform.machine(),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
