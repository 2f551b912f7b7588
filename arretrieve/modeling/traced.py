"""A traced copy of an AutoRegEmbed encoder, for cold starts on a CPU.

A new `arr search` process spends most of its time importing transformers (about 1.5 s of a 4 s
search on a 2-core CPU) to run one short query. The traced copy (TorchScript, with the weights)
loads with torch alone, and tokenises with the `tokenizers` library from the model's own
tokenizer.json, so a cold search never imports transformers. It is a cache, never a second
implementation: the first search with a model traces the eager encoder, keeps the trace only if it
gives the eager vectors on differently shaped batches, and any failure to trace, save or load falls
back to the eager model. Cached per entry fingerprint, dtype, pooling and torch version under
`$ARR_HOME/cache/traced` (`arr cache list|prune`).

Tracing records one execution. That is sound here because the encoder has no data-dependent
control flow for inputs of two tokens or more, and every input has a prompt and k compress tokens;
the shape checks before saving guard it. Graph optimisation is off when running: the profiling
executor's first calls cost more (about 0.2 s) than they save on a handful of queries.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from ..errors import ArrError
from ..home import WriteFault, traced_cache_dir, write_folder_atomic
from ..registry.model_entry import ModelEntry
from ..runtime import dtype_name
from .autoregembed_model import AutoRegEmbedModel, PromptedInputs

log = logging.getLogger(__name__)

TRACE_FILE = "encoder.ts"
TOKENIZER_FILE = "tokenizer.json"
LAYOUT_FILE = "arr_traced.json"  # written last: its presence marks a complete folder
# Batches of other sizes and lengths than the traced one, on which the trace must match.
CHECK_TEXTS = (["a short query", "fonts for the console", "a longer query about parsing configuration files " * 3],
               ["one"], ["x " * 40, "library", "y", "tool for reading and writing archives"])


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """torch 2.13 marks torch.jit deprecated on every call, and tracing warns about the shape
    checks it records; both are expected here (see the module docstring). Tracing also reads
    every attribute of the transformers model, deprecated properties included, which warn."""
    transformers_log = logging.getLogger("transformers")
    level = transformers_log.level
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        transformers_log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            transformers_log.setLevel(level)


class _Embed(nn.Module):
    """What is traced: right-padded ids and lengths → L2-normalised embeddings."""

    def __init__(self, model: AutoRegEmbedModel, pooling: str):
        super().__init__()
        self.model, self.pooling = model, pooling

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.embed(input_ids, lengths, self.pooling)


def traced_folder(entry: ModelEntry, dtype: torch.dtype) -> Path:
    return traced_cache_dir() / f"{entry.fingerprint}-{dtype_name(dtype)}-{entry.pooling}-torch{torch.__version__}"


class TamperedCache(ValueError):
    """A cached file whose content is not what was written (its recorded hash differs)."""


class TracedEncoder(PromptedInputs):
    """The traced encoder with the parts of AutoRegEmbedModel that encoding uses (the inputs'
    layout, `embed`, `hidden_size`), so AutoRegEmbedEmbedder runs either."""

    def __init__(self, folder: Path):
        import tokenizers

        layout = json.loads((folder / LAYOUT_FILE).read_text())
        trace, tokenizer = (folder / TRACE_FILE).read_bytes(), (folder / TOKENIZER_FILE).read_text(encoding="utf-8")
        recorded = layout.get("sha256") or {}
        if (recorded.get(TRACE_FILE) != hashlib.sha256(trace).hexdigest()
                or recorded.get(TOKENIZER_FILE) != hashlib.sha256(tokenizer.encode()).hexdigest()):
            raise TamperedCache(f"the traced encoder in {folder} is not the one written there (its content hash "
                                "differs); tracing the model again")
        self.bos_ids, self.compress_token_ids = layout["bos_ids"], layout["compress_token_ids"]
        self.pad_id, self.max_length, self.pooling = layout["pad_id"], layout["max_length"], layout["pooling"]
        self.hidden_size = layout["hidden_size"]
        self.device = torch.device("cpu")
        self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer)
        with _quiet_torchscript():
            self.module = torch.jit.load(io.BytesIO(trace), map_location="cpu")

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def embed(self, input_ids: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
        if pooling != self.pooling:
            raise ArrError(f"this traced encoder pools by {self.pooling!r}, not {pooling!r}")
        with torch.jit.optimized_execution(False):
            return self.module(input_ids, lengths)


def load_traced(entry: ModelEntry, dtype: torch.dtype) -> TracedEncoder | None:
    """The cached traced encoder of an entry, or None when there is none (or it cannot be read)."""
    folder = traced_folder(entry, dtype)
    if not (folder / LAYOUT_FILE).is_file():
        return None
    try:
        return TracedEncoder(folder)
    except TamperedCache as exc:
        log.warning("%s", exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None
    except Exception as exc:  # a damaged cache only costs the eager load; never a failed search
        log.info("cannot load the traced encoder in %s (%s); loading the model, which traces it again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def save_traced(model: AutoRegEmbedModel, entry: ModelEntry, dtype: torch.dtype) -> bool:
    """Trace a CPU model's encoder into the cache, if its trace reproduces its vectors."""
    folder = traced_folder(entry, dtype)
    backend = getattr(model.tokenizer, "backend_tokenizer", None)  # fast tokenizers only
    if backend is None or model.device.type != "cpu":
        return False
    template = entry.template("query")
    batches = [model.pad(model.encode_texts(texts, template).input_ids) for texts in CHECK_TEXTS]
    embed = _Embed(model, entry.pooling).eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), _quiet_torchscript():
            traced = torch.jit.trace(embed, batches[0], check_trace=False)
            with torch.jit.optimized_execution(False):
                exact = all(torch.equal(traced(*batch), embed(*batch)) for batch in batches)
            if not exact:
                log.info("the traced encoder of %s does not reproduce its vectors; not cached", entry.name)
                return False
            layout = {"bos_ids": model.bos_ids, "compress_token_ids": model.compress_token_ids, "pad_id": model.pad_id,
                      "max_length": model.max_length, "pooling": entry.pooling, "hidden_size": model.hidden_size,
                      "fingerprint": entry.fingerprint, "dtype": dtype_name(dtype), "torch": torch.__version__}

            hashes = {}

            def write(staging: Path) -> None:
                # Serialised in memory, written by Python: torch's own file writer aborts the whole
                # process (an exception in a destructor) when the disk fills.
                buffer = io.BytesIO()
                torch.jit.save(traced, buffer)
                (staging / TRACE_FILE).write_bytes(buffer.getbuffer())
                tokenizer = backend.to_str()
                (staging / TOKENIZER_FILE).write_text(tokenizer, encoding="utf-8")
                hashes.update({TRACE_FILE: hashlib.sha256(buffer.getbuffer()).hexdigest(),
                               TOKENIZER_FILE: hashlib.sha256(tokenizer.encode()).hexdigest()})

            # The hashes let a load tell the module written here from any other one put in its place.
            write_folder_atomic(folder, write, LAYOUT_FILE, lambda: {**layout, "sha256": hashes})
    except WriteFault as exc:  # a full disk is the user's to know about, though the search goes on
        log.warning("%s; searches load the model until the traced encoder can be cached", exc)
        return False
    except Exception as exc:  # tracing is an optimisation: any failure leaves the eager path, as before
        log.info("could not trace the encoder of %s (%s); searches load the model", entry.name, exc)
        return False
    return True
