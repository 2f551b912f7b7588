"""FSDP against DDP on two CPU processes (gloo), in one run: are the gradients the same?

    python benchmarks/fsdp_vs_ddp.py [--hidden 256 --layers 4 --steps 5]

Two processes (torch.multiprocessing, gloo on loopback) train the same randomly initialised Llama
(transformers' LlamaForCausalLM, seed 0) on the same global batch, split in halves across the
ranks: once wrapped in DistributedDataParallel, once sharded with torch's own `fully_shard`
(FSDP2: each decoder layer, then the model). Printed: the largest gradient difference after the
first backward (absolute, and relative to the largest gradient), the largest parameter difference
after --steps AdamW steps, the parameters each rank holds, and the wall of a step for each.

This is torch's FSDP, not `arr train --fsdp`: through HF Trainer (accelerate) a CPU run trains with
plain DDP, so `arr train` refuses --fsdp on CPUs (training/run.py check_sharding).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time


def _model(hidden: int, layers: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=hidden, intermediate_size=2 * hidden,
                                        num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=4))


def _train(model, batch, steps: int):
    """First-step gradients (full tensors), the step walls, and the parameters after `steps` steps."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    grads, walls = None, []
    for step in range(steps):
        start = time.perf_counter()
        model(input_ids=batch, labels=batch).loss.backward()
        if step == 0:
            grads = {n: _full(p.grad).clone() for n, p in model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
        walls.append(time.perf_counter() - start)
    return grads, walls, {n: _full(p.detach()).clone() for n, p in model.named_parameters()}


def _full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def _rank(rank: int, world: int, port: int, args, results) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    generator = torch.Generator().manual_seed(1)
    batch = torch.randint(0, 512, (args.batch * world, args.length), generator=generator)
    mine = batch[rank * args.batch:(rank + 1) * args.batch]

    ddp = DistributedDataParallel(_model(args.hidden, args.layers))
    ddp_grads, ddp_walls, ddp_params = _train(ddp, mine, args.steps)
    ddp_grads = {n.removeprefix("module."): g for n, g in ddp_grads.items()}
    ddp_params = {n.removeprefix("module."): p for n, p in ddp_params.items()}

    sharded = _model(args.hidden, args.layers)
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    held = sum(p.to_local().numel() for p in sharded.parameters())
    fsdp_grads, fsdp_walls, fsdp_params = _train(sharded, mine, args.steps)
    if rank == 0:
        largest = max(g.abs().max().item() for g in ddp_grads.values())
        results.update(
            gradient_max_abs_diff=max((fsdp_grads[n] - g).abs().max().item() for n, g in ddp_grads.items()),
            gradient_max_abs=largest,
            params_max_abs_diff_after_steps=max((fsdp_params[n] - p).abs().max().item() for n, p in ddp_params.items()),
            parameters=sum(p.numel() for p in ddp_params.values()), parameters_held_per_rank_fsdp=held,
            step_wall_ddp_s=sorted(ddp_walls[1:])[len(ddp_walls[1:]) // 2],
            step_wall_fsdp_s=sorted(fsdp_walls[1:])[len(fsdp_walls[1:]) // 2],
        )
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4, help="sequences per rank")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import torch
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_rank, args=(2, port, args, results), nprocs=2)
        results = dict(results)
    results.update(torch=torch.__version__, backend="gloo", processes=2, machine=platform.processor() or platform.machine(),
                   settings=vars(args))
    print(json.dumps(results, indent=2))
    print(f"gradients: FSDP - DDP max |diff| {results['gradient_max_abs_diff']:.3g} "
          f"(largest gradient {results['gradient_max_abs']:.3g}); parameters after {args.steps} steps: "
          f"{results['params_max_abs_diff_after_steps']:.3g}; each rank holds "
          f"{results['parameters_held_per_rank_fsdp'] / results['parameters']:.2f} of the parameters under FSDP; "
          f"step {results['step_wall_fsdp_s'] / results['step_wall_ddp_s']:.2f}x DDP's wall")


if __name__ == "__main__":
    main()
