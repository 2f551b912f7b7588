"""What the decoder is handed: statistics of a model's compress states over real documents.

    python benchmarks/state_statistics.py --model smollm2-135m --model autoregembed-s1-infonce-smollm2-135m \
        --corpus data/debian-desc/dev/corpus.jsonl --docs 48

For the first --docs documents, encoded with the entry's `i_next` prompt (stage 1's encoder side) in
fp32: the states' mean norm, the norm of their mean vector (the part every document shares), the
share of their energy in the three dimensions with the largest mean (massive activations), the
between-document share of the energy at each compress position, and the token embeddings' norm
(what the decoder's inputs normally look like). A stage 1 whose states are mostly one shared vector
gives the decoder little to tell documents apart by.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR corpus.jsonl")
    parser.add_argument("--docs", type=int, default=48)
    args = parser.parse_args()

    import torch

    from arretrieve.modeling.loading import load_autoregembed
    from arretrieve.registry import Registry

    with open(args.corpus, encoding="utf-8") as handle:
        docs = [json.loads(line)["text"] for _, line in zip(range(args.docs), handle)]
    for name in args.model:
        entry = Registry().get(name)
        model = load_autoregembed(entry, torch.float32, torch.device("cpu"))
        ids, lengths = model.pad(model.encode_texts(docs, entry.template("i_next")).input_ids)
        with torch.no_grad():
            states = model.compress(ids, lengths).float()  # (docs, k, hidden)
            tokens = model._base_lm.get_input_embeddings().weight.float()
        flat = states.reshape(-1, states.shape[-1])
        mean = flat.mean(0)
        top = mean.abs().topk(3).indices
        centred = states - states.mean(0, keepdim=True)
        print(json.dumps({
            "model": name, "docs": len(docs), "state_norm": round(float(flat.norm(dim=1).mean()), 2),
            "mean_vector_norm": round(float(mean.norm()), 2),
            "top3_dims": {int(i): round(float(mean[i]), 2) for i in top},
            "top3_energy_share": round(float((flat[:, top] ** 2).sum() / (flat ** 2).sum()), 3),
            "between_doc_share_per_position": [round(float((centred[:, j] ** 2).sum() / (states[:, j] ** 2).sum()), 3)
                                               for j in range(states.shape[1])],
            "token_embedding_norm": round(float(tokens.norm(dim=1).mean()), 2),
            "machine": platform.node(), "date": time.strftime("%Y-%m-%d"),
        }), flush=True)


if __name__ == "__main__":
    main()
