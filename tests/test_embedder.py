import logging

import numpy as np
import pytest

from arretrieve.encoding import load_embedder
from arretrieve.runtime import resolve_device, resolve_dtype
from arretrieve.errors import ArrError
from arretrieve.registry import ModelEntry
from conftest import SENTENCES, tiny_entry

TEXTS = SENTENCES + ["x", "a much longer text " * 12, "fonts"]


@pytest.fixture(scope="module")
def embedder(tiny_llama_dir):
    return load_embedder(tiny_entry(tiny_llama_dir), device="cpu", dtype="float32")


def test_output_is_float32_normalised_and_in_input_order(embedder):
    vectors = embedder.encode(TEXTS, role="document", batch_size=4)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([embedder.encode([t], role="document")[0] for t in TEXTS])
    assert np.abs(vectors - one_by_one).max() < 1e-5


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_vectors_do_not_depend_on_batch_composition(embedder, batch_size):
    alone = embedder.encode(["fonts"], role="query")[0]
    mixed = embedder.encode(["a much longer text " * 12, "fonts", "x"], role="query", batch_size=batch_size)[1]
    assert np.abs(alone - mixed).max() < 1e-5


def test_roles_use_their_prompts(embedder):
    query = embedder.encode(["fonts"], role="query")
    document = embedder.encode(["fonts"], role="document")
    assert not np.allclose(query, document)
    with pytest.raises(ArrError, match="unknown role"):
        embedder.encode(["fonts"], role="passage")


def test_empty_input_gives_an_empty_matrix(embedder):
    assert embedder.encode([], role="query").shape == (0, 64)


def test_truncation_is_counted_and_reported(embedder, caplog):
    with caplog.at_level(logging.WARNING, logger="arretrieve"):
        embedder.encode(["fonts", "long text " * 100], role="document")
    assert embedder.last_stats.truncated == 1
    assert embedder.last_stats.truncated_examples == [1]
    assert "1 of 2 texts were longer than max_length" in caplog.text


def test_batch_size_halves_on_out_of_memory(embedder, monkeypatch):
    expected = embedder.encode(TEXTS, role="document", batch_size=8)
    original = type(embedder).embed_batch
    calls = []

    def flaky(self, items):
        calls.append(len(items))
        if len(items) > 2:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return original(self, items)

    monkeypatch.setattr(type(embedder), "embed_batch", flaky)
    vectors = embedder.encode(TEXTS, role="document", batch_size=8)
    assert calls[:3] == [8, 4, 2]
    assert embedder.last_stats.final_batch_size == 2
    assert np.abs(vectors - expected).max() < 1e-5


def test_other_errors_are_not_swallowed(embedder, monkeypatch):
    def broken(self, items):
        raise ValueError("boom")

    monkeypatch.setattr(type(embedder), "embed_batch", broken)
    with pytest.raises(ValueError, match="boom"):
        embedder.encode(["fonts"], role="document")


def test_bf16_vectors_match_fp32(tiny_llama_dir, embedder):
    bf16 = load_embedder(tiny_entry(tiny_llama_dir), device="cpu", dtype="bfloat16")
    fp32_vectors = embedder.encode(TEXTS, role="document")
    bf16_vectors = bf16.encode(TEXTS, role="document")
    assert bf16_vectors.dtype == np.float32
    assert (fp32_vectors * bf16_vectors).sum(1).min() > 0.99


def test_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch, caplog):
    import torch

    from arretrieve import runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    runtime._warn_emulated_bf16.cache_clear()
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert not caplog.records
    for _ in range(2):
        assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert len([record for record in caplog.records if "emulated" in record.message]) == 1
    runtime._warn_emulated_bf16.cache_clear()


def test_device_and_dtype_choice():
    import torch

    assert resolve_device("cpu").type == "cpu"
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(ArrError, match="unknown dtype"):
        resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(ArrError, match="unknown device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ArrError, match="no CUDA"):
            resolve_device("cuda")


def test_sentence_transformers_kind(tiny_st_dir):
    entry = ModelEntry(name="tiny-st", kind="sentence-transformers", base=str(tiny_st_dir), dim=32, dtype="float32", max_length=64)
    st_embedder = load_embedder(entry, device="cpu")
    vectors = st_embedder.encode(TEXTS, role="query", batch_size=4)
    assert vectors.shape == (len(TEXTS), 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = st_embedder.encode([TEXTS[3]], role="query")[0]
    assert np.abs(alone - vectors[3]).max() < 1e-5


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(capsys):
    from arretrieve.runtime import PlainProgress, progress_bar

    progress = progress_bar("texts")
    assert isinstance(progress, PlainProgress)  # pytest's captured stderr is no terminal
    with progress:
        task = progress.add_task("encoding", total=10)
        progress.update(task, advance=4)  # within 15 s of the start: no line yet
        progress.update(task, advance=6)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["encoding: 10/10 texts (100%)"]
    with PlainProgress("texts", every=0) as progress:  # a line at every update: with its rate, and a new description
        task = progress.add_task("encoding", total=10)
        progress.update(task, advance=4, description="encoding, shard 1/3")
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("encoding, shard 1/3: 4/10 texts (40%), ") and " texts/s, about " in first


def test_traced_encoder_gives_the_eager_vectors_and_loads_without_transformers(tiny_llama_dir, isolated_home):
    """`traced=True` (what searches use on a CPU) writes the traced encoder on the first load and
    runs it on later ones: same ids, same vectors, same truncation count, and transformers is
    never imported."""
    import json
    import subprocess
    import sys

    from arretrieve.modeling.traced import TracedEncoder, traced_folder

    entry = tiny_entry(tiny_llama_dir)
    eager = load_embedder(entry, device="cpu", dtype="float32", traced=True)
    assert not isinstance(eager.model, TracedEncoder)
    folder = traced_folder(entry, eager.dtype)
    assert folder.is_dir()
    traced = load_embedder(entry, device="cpu", dtype="float32", traced=True)
    assert isinstance(traced.model, TracedEncoder)
    texts = TEXTS + ["long text " * 100]
    for role in ("query", "document"):
        template = entry.template(role)
        assert traced.model.encode_texts(texts, template) == eager.model.encode_texts(texts, template)
        np.testing.assert_array_equal(traced.encode(texts, role=role, batch_size=3), eager.encode(texts, role=role, batch_size=3))
        assert traced.last_stats.truncated == eager.last_stats.truncated > 0

    script = ("import json, sys; from arretrieve.encoding import load_embedder; from arretrieve.registry import ModelEntry;"
              f"entry = ModelEntry.from_dict(json.loads({json.dumps(json.dumps(entry.to_dict()))}));"
              "vectors = load_embedder(entry, device='cpu', dtype='float32', traced=True).encode(['fonts'], role='query');"
              "print(json.dumps({'transformers': 'transformers' in sys.modules, 'vector': vectors[0].tolist()}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "ARR_HOME": str(isolated_home)})
    report = json.loads(out.stdout)
    assert report["transformers"] is False
    np.testing.assert_array_equal(np.array(report["vector"], dtype=np.float32), eager.encode(["fonts"], role="query")[0])


def test_a_damaged_traced_encoder_falls_back_to_the_model_and_is_rewritten(tiny_llama_dir):
    from arretrieve.modeling.traced import TRACE_FILE, TracedEncoder, traced_folder

    entry = tiny_entry(tiny_llama_dir)
    expected = load_embedder(entry, device="cpu", dtype="float32", traced=True).encode(["fonts"], role="query")
    (traced_folder(entry, resolve_dtype("float32", resolve_device("cpu"))) / TRACE_FILE).write_bytes(b"not a trace")
    embedder = load_embedder(entry, device="cpu", dtype="float32", traced=True)
    assert not isinstance(embedder.model, TracedEncoder)
    np.testing.assert_array_equal(embedder.encode(["fonts"], role="query"), expected)
    repaired = load_embedder(entry, device="cpu", dtype="float32", traced=True)  # that load traced it again
    assert isinstance(repaired.model, TracedEncoder)
    np.testing.assert_array_equal(repaired.encode(["fonts"], role="query"), expected)


def test_a_traced_encoder_replaced_by_another_module_is_detected_and_rebuilt(tiny_llama_dir, caplog):
    """Any TorchScript module put in the cache would otherwise answer every query (an attacker's
    constant vector, say): the content hash recorded at write time catches it."""
    import torch

    from arretrieve.modeling.traced import TRACE_FILE, TracedEncoder, traced_folder

    class Constant(torch.nn.Module):
        def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return torch.ones(input_ids.shape[0], 64) / 8.0

    entry = tiny_entry(tiny_llama_dir)
    expected = load_embedder(entry, device="cpu", dtype="float32", traced=True).encode(["fonts"], role="query")
    torch.jit.save(torch.jit.script(Constant()), str(traced_folder(entry, torch.float32) / TRACE_FILE))
    with caplog.at_level(logging.WARNING):
        embedder = load_embedder(entry, device="cpu", dtype="float32", traced=True)
    assert not isinstance(embedder.model, TracedEncoder)
    assert any("content hash" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    np.testing.assert_array_equal(embedder.encode(["fonts"], role="query"), expected)
    assert isinstance(load_embedder(entry, device="cpu", dtype="float32", traced=True).model, TracedEncoder)
