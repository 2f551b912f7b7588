"""The compression probe on any registry model: does the frozen decoder read the source from its states?

    python benchmarks/compression_probe.py --model autoregembed-smollm2-135m \
        --data data/debian-desc/dev --split dev --pairs 200

Pairs are (document, query) of a BEIR folder (queries with one relevant document, in id order),
scored in groups of 20; see `arretrieve/evaluation/compression_probe.py` for the definitions.
Targets (issue 13): specific_share >= 0.5, identification >= 0.8, self_identification >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="registry name (repeat for several)")
    parser.add_argument("--data", required=True, help="a BEIR folder (never one the model trained on)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--group-size", type=int, default=20)
    parser.add_argument("--dtype", default="auto")
    args = parser.parse_args()

    from arretrieve.runtime import dtype_name, resolve_device, resolve_dtype
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.compression_probe import CompressionProbe, pairs_from_beir
    from arretrieve.modeling.loading import load_autoregembed
    from arretrieve.registry import Registry

    device = resolve_device("auto")
    dtype = resolve_dtype(args.dtype, device)
    pairs = pairs_from_beir(load_dataset(args.data, args.split), args.pairs)
    registry = Registry()
    probes = {}  # one probe per base and prompts: its plain-text side (the frozen decoder's) is measured once
    for name in args.model:
        entry = registry.get(name)
        started = time.perf_counter()
        model = load_autoregembed(entry, dtype, device, frozen_decoder=True)
        key = (entry.base, entry.template("i_next"), entry.template("i_self"))
        probe = probes.setdefault(key, CompressionProbe(pairs, *key[1:], args.group_size))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            result = probe.measure(model)
        print(json.dumps({"model": name, "fingerprint": entry.fingerprint, "data": str(args.data), "split": args.split,
                          "dtype": dtype_name(dtype), "machine": platform.processor() or platform.machine(),
                          "seconds": round(time.perf_counter() - started, 1),
                          **{k: round(v, 4) if isinstance(v, float) else v for k, v in result.to_dict().items()}}))


if __name__ == "__main__":
    main()
