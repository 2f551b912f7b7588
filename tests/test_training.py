import json
import logging
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from arretrieve.errors import ArrError
from arretrieve.registry import Registry
from arretrieve.training import TrainConfig, build_config, read_config_file, train
from arretrieve.training.config import nest_stage_settings
from arretrieve.training.batches import TripletCollator, TripletSet
from arretrieve.training.data import load_triplets
from arretrieve.training.losses import alignment_loss, beta_saturation, info_nce_loss
from arretrieve.training.model_setup import build_trainable
from arretrieve.training.objectives import OBJECTIVES, batch_needs, objective
from arretrieve.training.steps import alignment_log_probs, stage_loss
from conftest import SENTENCES, tiny_entry, write_beir_corpus


def _align_loss(model, batch, cfg):
    """The loss of one step of the objective's stage 2."""
    return stage_loss(objective(cfg.objective).stage("align"), model, batch, cfg)


def _needs(cfg):
    return batch_needs(objective(cfg.objective).stage("align"), cfg)


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _hand_loss(a, b, cs, ref_pos, ref_negs, beta, tau, form):
    s1 = _sigmoid(beta * abs(a - b))
    if form == "code":
        s2 = [_sigmoid(beta * ((a - c) + (ref_pos - r))) for c, r in zip(cs, ref_negs)]
    else:
        s2 = [_sigmoid(beta * ((a - ref_pos) - (c - r))) for c, r in zip(cs, ref_negs)]
    numerator = math.exp(-s1 / tau)
    return -math.log(numerator / (numerator + sum(math.exp(-s / tau) for s in s2)))


@pytest.mark.parametrize("form", ["code", "paper"])
@pytest.mark.parametrize("negatives", [1, 3])
def test_alignment_loss_equals_a_hand_computation(form, negatives):
    rows = [(-20.0, -18.5, [-35.0, -22.0, -41.0], -19.0, [-30.0, -25.0, -44.0]),
            (-7.0, -9.0, [-6.5, -12.0, -8.0], -8.0, [-9.0, -10.0, -7.5])]
    expected = sum(_hand_loss(a, b, c[:negatives], rp, rn[:negatives], 0.1, 0.1, form) for a, b, c, rp, rn in rows) / 2
    tensor = lambda i: torch.tensor([r[i] for r in rows])  # noqa: E731
    loss = alignment_loss(tensor(0), tensor(1), torch.tensor([r[2][:negatives] for r in rows]), tensor(3),
                          torch.tensor([r[4][:negatives] for r in rows]), beta=0.1, tau=0.1, reference_form=form)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_one_negative_is_the_reference_codes_softplus():
    a, b, c, rp, rn = (torch.tensor([v]) for v in (-20.0, -18.5, -35.0, -19.0, -30.0))
    s1 = torch.sigmoid(0.1 * (a - b).abs())
    s2 = torch.sigmoid(0.1 * ((a - c) + (rp - rn)))
    reference = torch.nn.functional.softplus((s1 - s2) / 0.1)
    assert alignment_loss(a, b, c.view(1, 1), rp, rn.view(1, 1), 0.1, 0.1, "code").item() == pytest.approx(reference.item(), rel=1e-5)


def test_info_nce_with_and_without_in_batch_negatives():
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=1)
    positives = queries.clone()
    negatives = torch.nn.functional.normalize(torch.tensor([[[1.0, 1.0]], [[-1.0, 1.0]]]), dim=2)
    own = info_nce_loss(queries, positives, negatives, temperature=1.0, in_batch=False)
    s = 1 / math.sqrt(2)
    assert own.item() == pytest.approx(-math.log(math.e / (math.e + math.exp(s))), rel=1e-6)
    assert info_nce_loss(queries, positives, negatives, 1.0, in_batch=True) > own


@pytest.fixture
def data(tmp_path):
    compression = tmp_path / "compression.jsonl"
    compression.write_text("".join(json.dumps({"context": s + " with details", "instruction": "Summarize it.", "output": s[:18]}) + "\n"
                                   for s in SENTENCES * 3))
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text("".join(json.dumps({"query": s[:14], "pos": s, "neg": [SENTENCES[(i + 1) % 6], SENTENCES[(i + 3) % 6]]}) + "\n"
                                for i, s in enumerate(SENTENCES * 3)))
    return compression, triplets


def config(tmp_path, data, **overrides):
    compression, triplets = data
    values = dict(name="trained", base="tiny", compression_data=str(compression), alignment_data=str(triplets),
                  compress_max_steps=3, align_max_steps=3, compress_batch_size=4, align_batch_size=4, dtype="float32",
                  lora_r=4, lora_alpha=8, output_dir=str(tmp_path / "run"), logging_steps=1, save_steps=100)
    values.update(overrides)
    return TrainConfig(**nest_stage_settings(values))  # the flat spelling of stage settings, as config files allow


def test_batched_and_sequential_passes_agree(tmp_path, data, registry):
    cfg = config(tmp_path, data, lora_dropout=0.0)
    model = build_trainable(registry.get("tiny"), cfg, torch.float32).eval()
    triplets, _ = load_triplets(str(data[1]), cfg.fields, 2)
    entry = registry.get("tiny")
    dataset = TripletSet(model, triplets, entry.prompts["i_next"], entry.prompts["i_self"], 64, _needs(cfg))
    batch = TripletCollator(model.pad_id)([dataset[i] for i in range(5)])
    with torch.no_grad():
        batched = alignment_log_probs(model, batch, "batched")
        sequential = alignment_log_probs(model, batch, "sequential")
    for x, y in zip(batched, sequential):
        assert x.shape == y.shape and torch.allclose(x, y, atol=1e-4)
    assert batched[2].shape == (5, 2)


def _weights(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("lora", [True, False])
def test_a_step_changes_the_encoder_and_never_the_decoder(tmp_path, data, registry, monkeypatch, lora, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    import arretrieve.training.run as run_module

    captured = {}
    original_run_stage = run_module._run_stage

    def capture(stage, model, *args, **kwargs):  # the AutoRegEmbedModel handed to the trainer
        captured[stage] = {"before_rows": model.compress_embeddings.detach().clone(), "before": _weights(model.causal_lm)}
        outcome = original_run_stage(stage, model, *args, **kwargs)
        captured[stage]["model"] = model
        return outcome

    monkeypatch.setattr(run_module, "_run_stage", capture)
    train(config(tmp_path, data, stage="compress", lora=lora, compress_max_steps=1, warmup_ratio=0.0), registry=registry)
    model = captured["compress"]["model"]
    before = captured["compress"]["before"]
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    base_state = base.state_dict()
    if lora:
        changed = [n for n, p in model.causal_lm.named_parameters() if not torch.equal(p, before[n])]
        assert changed and all("lora_" in n for n in changed)
        # The decoder is the base with adapters off: its weights are bit-identical to the released base.
        with model.frozen_decoder() as decoder:
            for name, tensor in decoder.state_dict().items():
                plain = name.replace("base_model.model.", "").replace(".base_layer", "")
                if "lora_" not in name:
                    assert torch.equal(tensor, base_state[plain]), name
    else:
        assert any(not torch.equal(p, before[n]) for n, p in model.causal_lm.named_parameters())
        for name, tensor in model.frozen_decoder_lm.state_dict().items():
            assert torch.equal(tensor, base_state[name]), name
    assert not torch.equal(model.compress_embeddings, captured["compress"]["before_rows"])


@pytest.mark.parametrize("lora", [True, False])
def test_saved_weights_load_back_for_resume(tmp_path, data, registry, lora):
    from arretrieve.training.model_setup import load_trained_state, save_trained

    cfg = config(tmp_path, data, lora=lora)
    trained = build_trainable(registry.get("tiny"), cfg, torch.float32)
    with torch.no_grad():
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter))
    save_trained(trained, tmp_path / "saved")
    fresh = build_trainable(registry.get("tiny"), cfg, torch.float32)
    load_trained_state(fresh, tmp_path / "saved")
    expected = {n: p for n, p in trained.named_parameters() if p.requires_grad}
    loaded = dict(fresh.named_parameters())
    assert expected and all(torch.equal(p, loaded[n]) for n, p in expected.items())


@pytest.mark.parametrize("grouped", [False, True])
def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(tmp_path, data, registry, grouped):
    from safetensors.torch import load_file

    from arretrieve.training.trainer import MetricsLog

    straight = config(tmp_path / "a", data, name="straight", stage="all", compress_max_steps=4, align_max_steps=4, save_steps=2,
                      group_by_length=grouped)
    train(straight, registry=registry)

    class Crash(Exception):
        pass

    original = MetricsLog.on_log

    def crash_at_step_3_of_align(self, args, state, control, **kwargs):  # after its loss is in metrics.jsonl
        original(self, args, state, control, **kwargs)
        if self.stage == "align" and state.global_step == 3:
            raise Crash

    interrupted = config(tmp_path / "b", data, name="resumed", stage="all", compress_max_steps=4, align_max_steps=4, save_steps=2,
                         group_by_length=grouped)
    MetricsLog.on_log = crash_at_step_3_of_align
    try:
        with pytest.raises(Crash):
            train(interrupted, registry=registry)
    finally:
        MetricsLog.on_log = original
    assert (tmp_path / "b" / "run" / "align" / "checkpoint-2").is_dir()
    # as if stage 2 had trained 1,000 s before the crash: the resumed model's provenance counts them
    log_path = tmp_path / "b" / "run" / "metrics.jsonl"
    logged = [json.loads(line) for line in log_path.read_text().splitlines()]
    log_path.write_text("".join(json.dumps({**r, "seconds": r["seconds"] + 1000} if r["stage"] == "align" and "seconds" in r
                                           else r) + "\n" for r in logged))
    interrupted.resume = True
    train(interrupted, registry=registry)
    for name in ("adapter_model.safetensors", "compress_embeddings.safetensors"):
        a = load_file(str(tmp_path / "a" / "run" / "align" / "final" / name))
        b = load_file(str(tmp_path / "b" / "run" / "align" / "final" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # metrics.jsonl: the steps measured again after the checkpoint appear once, the clock runs on
    records = [[json.loads(line) for line in (tmp_path / side / "run" / "metrics.jsonl").read_text().splitlines()] for side in "ab"]
    assert [(r["stage"], r["step"]) for r in records[1]] == [(r["stage"], r["step"]) for r in records[0]]
    seconds = [r["seconds"] for r in records[1] if r["stage"] == "align"]
    assert seconds == sorted(seconds)
    spent = registry.get("resumed").provenance["seconds"]
    assert spent["align"] >= seconds[-1] > 1000
    # stage 1 finished before the crash: its seconds come from the log, and the total counts both sessions
    assert spent["compress"] == max(r["seconds"] for r in records[1] if r["stage"] == "compress") > 0
    assert spent["total"] >= spent["compress"] + spent["align"]


def test_end_to_end_train_registers_a_model_that_encodes(tmp_path, data, registry):
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.encoding import load_embedder

    compression, triplets = data
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["train", "--name", "tiny-are", "--base", "tiny", "--compression-data", str(compression),
                                      "--alignment-data", str(triplets), "--max-steps", "3", "--batch-size", "4",
                                      "--dtype", "float32", "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - started < 60
    entry = Registry().get("tiny-are")
    assert entry.weights == "adapter" and entry.provenance["stages"] == ["compress", "align"]
    assert set(entry.provenance["final_losses"]) == {"compress", "align"}
    assert entry.provenance["data"]["alignment"]["examples"] == 18
    run = tmp_path / "run"
    assert {"config.json", "metrics.jsonl", "loss-compress.png", "loss-align.png"} <= {p.name for p in run.iterdir()}
    vectors = load_embedder(entry, device="cpu").encode(["yaml parser", "fonts"], role="query")
    assert vectors.shape == (2, 64)
    untrained = load_embedder(registry.get("tiny"), device="cpu").encode(["yaml parser", "fonts"], role="query")
    assert not torch.allclose(torch.from_numpy(vectors), torch.from_numpy(untrained))


def test_reference_scores_are_cached_and_reused(tmp_path, data, registry, isolated_home, caplog):
    train(config(tmp_path / "a", data, name="first"), registry=registry)
    cached = list((isolated_home / "cache" / "reference").glob("*.npy"))
    assert len(cached) == 1
    first_stage = tmp_path / "a" / "run" / "compress" / "final"
    registry.add(tiny_entry(registry.get("tiny").base, name="stage1", weights="adapter", weights_path=str(first_stage)))
    with caplog.at_level(logging.INFO, logger="arretrieve"):
        train(config(tmp_path / "b", data, name="second", base="stage1", stage="align", beta=1e4), registry=registry)
    assert "reference scores reused" in caplog.text
    assert "saturates the alignment loss for 100% of the triplets" in caplog.text


def test_beta_saturation_measures_the_margin_of_the_form_in_use():
    reference = torch.tensor([[-100.0, -300.0, -110.0], [-50.0, -40.0, -250.0]])  # gaps 200, 10, 10, 200
    # code form: the step-0 margin is twice the gap (400, 20, 20, 400); torch.median is the lower middle value
    assert beta_saturation(reference, beta=0.1, reference_form="code") == (0.5, 20.0)
    assert beta_saturation(reference, beta=0.015, reference_form="code") == (0.5, 20.0)  # 6 > 4 but 0.3 < 4
    assert beta_saturation(reference, beta=0.005, reference_form="code") == (0.0, 20.0)
    assert beta_saturation(reference, beta=0.1, reference_form="paper") == (0.0, 0.0)  # DPO form starts at 0


def test_contrastive_baseline_trains_with_its_pooling(tmp_path, data, registry):
    result = train(config(tmp_path, data, name="infonce", objective="contrastive", pooling="last-token"), registry=registry)
    assert result.entry.pooling == "last-token" and result.entry.provenance["stages"] == ["align"]
    assert "compress" not in result.final_losses


@pytest.mark.parametrize("lora", [True, False])
def test_training_from_a_trained_model_continues_its_weights(tmp_path, data, registry, lora):
    """InfoNCE or another stage 1 on a trained `--base` starts from its weights, not from the
    untrained base under it: with a zero learning rate the result encodes exactly as the base does.
    A LoRA model also continues under full fine-tuning (its adapter merged); fully fine-tuned
    weights cannot take LoRA."""
    from arretrieve.encoding import load_embedder

    texts = ["yaml parser", "fonts for the console"]
    started = train(config(tmp_path / "a", data, name="stage1", stage="compress", lora=lora), registry=registry).entry
    expected = load_embedder(started, device="cpu").encode(texts, role="query")
    untrained = load_embedder(registry.get("tiny"), device="cpu").encode(texts, role="query")
    assert not torch.allclose(torch.from_numpy(expected), torch.from_numpy(untrained))
    for name, settings in [("infonce", dict(objective="contrastive")), ("again", dict(stage="compress"))]:
        cfg = config(tmp_path / name, data, name=name, base="stage1", lora=lora, compress_lr=0.0, align_lr=0.0, **settings)
        continued = train(cfg, registry=registry).entry
        vectors = load_embedder(continued, device="cpu").encode(texts, role="query")
        assert torch.allclose(torch.from_numpy(vectors), torch.from_numpy(expected), atol=1e-5), name
    switched = config(tmp_path / "switched", data, name="switched", base="stage1", lora=not lora, objective="contrastive",
                      align_lr=0.0)
    if lora:
        merged = train(switched, registry=registry).entry
        assert merged.weights == "full"
        vectors = load_embedder(merged, device="cpu").encode(texts, role="query")
        assert torch.allclose(torch.from_numpy(vectors), torch.from_numpy(expected), atol=1e-5)
    else:
        with pytest.raises(ArrError, match="holds fully fine-tuned weights; a run continuing it must use full fine-tuning"):
            train(switched, registry=registry)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"query": "q", "pos": "p"}', r"triplets.jsonl:2: missing field 'neg'"),
        ('{"query": "q", "pos": " ", "neg": "n"}', r"triplets.jsonl:2: field 'pos' is empty"),
        ('{"query": 3, "pos": "p", "neg": "n"}', r"triplets.jsonl:2: field 'query' must be a string, not int"),
        ('{"query": "q", "pos": "p", "neg": [1]}', r"triplets.jsonl:2: field 'neg' must be a string or a list of strings"),
        ("{oops", r"triplets.jsonl:2: malformed JSON"),
    ],
)
def test_malformed_rows_are_named_before_any_compute(tmp_path, registry, line, message, monkeypatch):
    triplets = tmp_path / "triplets.jsonl"
    triplets.write_text('{"query": "q", "pos": "p", "neg": "n"}\n' + line + "\n")
    import arretrieve.training.run as run_module

    monkeypatch.setattr(run_module, "build_trainable", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ArrError, match=message):
        train(TrainConfig(name="x", base="tiny", objective="contrastive", alignment_data=str(triplets)), registry=registry)


def test_settings_come_from_flags_then_file_then_preset(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('name = "from-file"\npreset = "paper"\nalign_lr = 1e-6\nbeta = 0.2\n')
    settings = build_config(read_config_file(path), {"beta": 0.3})
    assert settings.name == "from-file" and settings.beta == 0.3 and settings.align.lr == 1e-6
    assert settings.compress.lr == 1e-5 and settings.align.batch_size == 128 and settings.align.epochs == 4.0
    (tmp_path / "bad.json").write_text('{"name": "x", "colour": 1}')
    with pytest.raises(ArrError, match="unknown settings"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ArrError, match="name for the trained model"):
        build_config({}, {})
    with pytest.raises(ArrError, match="stage must be one of"):
        TrainConfig(name="x", stage="everything")


def test_existing_run_or_name_is_not_clobbered(tmp_path, data, registry):
    train(config(tmp_path, data), registry=registry)
    with pytest.raises(ArrError, match="already registered"):
        train(config(tmp_path, data), registry=registry)
    with pytest.raises(ArrError, match="already holds a run"):
        train(config(tmp_path, data, name="other"), registry=registry)


def test_prompts_setting_trains_with_and_records_its_templates(tmp_path, data, registry):
    prompts = {"i_next": "{text}\nSummarize this text in one line.\n", "document": "{text}\nSummarize this text in one line.\n"}
    result = train(config(tmp_path, data, name="prompted", prompts=prompts), registry=registry)
    entry = registry.get("prompted")
    assert entry.prompts["i_next"] == entry.prompts["document"] == prompts["i_next"]
    assert entry.prompts["query"] == registry.get("tiny").prompts["query"]  # roles not set are the base's
    assert result.entry.provenance["hyperparameters"]["prompts"] == prompts


def test_bad_prompts_setting_is_refused_before_any_compute(tmp_path, data, registry, monkeypatch):
    import arretrieve.training.run as run_module

    monkeypatch.setattr(run_module, "build_trainable", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ArrError, match=r"prompts setting: .*exactly one \{text\}"):
        train(config(tmp_path, data, prompts={"i_next": "no slot"}), registry=registry)
    with pytest.raises(ArrError, match="prompts must map roles to template strings"):
        TrainConfig(name="x", prompts={"i_next": 3})


def eval_folder(root):
    """A tiny BEIR set: each sentence is a document, its first words the query."""
    folder = write_beir_corpus(root / "eval", [{"_id": f"d{i}", "title": "", "text": s} for i, s in enumerate(SENTENCES)])
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": s[:14]}) + "\n" for i, s in enumerate(SENTENCES)))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "dev.tsv").write_text("".join(f"q{i}\td{i}\t1\n" for i in range(len(SENTENCES))))
    return folder


def test_retrieval_is_measured_during_training_without_changing_it(tmp_path, data, registry):
    from safetensors.torch import load_file

    plain = train(config(tmp_path / "a", data, name="plain"), registry=registry)
    watched = train(config(tmp_path / "b", data, name="watched", eval_data=str(eval_folder(tmp_path)), eval_split="dev",
                           eval_steps=2), registry=registry)
    records = [json.loads(line) for line in (watched.run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [(r["stage"], r["step"]) for r in records if "ndcg@10" in r]
    assert evaluated == [("compress", 0), ("compress", 2), ("compress", 3), ("align", 0), ("align", 2), ("align", 3)]
    assert all(0 <= r["ndcg@10"] <= 1 and r["eval"] == "eval" for r in records if "ndcg@10" in r)
    assert {p.name for p in watched.run_dir.glob("loss-*.png")} == {"loss-compress.png", "loss-align.png"}
    for name in ("adapter_model.safetensors", "compress_embeddings.safetensors"):
        a, b = (load_file(str(r.run_dir / "align" / "final" / name)) for r in (plain, watched))
        assert all(torch.equal(a[k], b[k]) for k in a), name  # evaluating drew no random numbers


def test_retrieval_check_encodes_at_the_entrys_length_whatever_training_cuts(tmp_path, data, registry):
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.training.evaluation import RetrievalCheck

    entry = registry.get("tiny")
    check = RetrievalCheck(entry, load_dataset(str(eval_folder(tmp_path)), "dev"), torch.float32)
    short = build_trainable(entry, config(tmp_path, data, max_length=12), torch.float32)
    full = build_trainable(entry, config(tmp_path, data, max_length=entry.max_length), torch.float32)
    assert check.measure(short) == check.measure(full) and short.max_length == 12


def test_bad_eval_data_is_refused_before_any_compute(tmp_path, data, registry, monkeypatch):
    monkeypatch.setattr("arretrieve.training.run.build_trainable", lambda *a, **k: pytest.fail("model loaded first"))
    with pytest.raises(ArrError, match=r"qrels/test.tsv does not exist"):
        train(config(tmp_path, data, eval_data=str(eval_folder(tmp_path))), registry=registry)
    with pytest.raises(ArrError, match="eval_steps must be at least 1"):
        config(tmp_path, data, eval_steps=0)


@pytest.mark.parametrize("lora", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(tmp_path, data, registry, lora):
    """The shared copy's decoder pass (adapters off) must be recomputed with adapters off too."""
    entry = registry.get("tiny")
    triplets, _ = load_triplets(str(data[1]), TrainConfig(name="x").fields, 2)
    gradients = []
    for checkpointing in (False, True):
        cfg = config(tmp_path, data, lora=lora, lora_dropout=0.0, gradient_checkpointing=checkpointing)
        model = build_trainable(entry, cfg, torch.float32).train()
        dataset = TripletSet(model, triplets, entry.prompts["i_next"], entry.prompts["i_self"], 64, _needs(cfg))
        dataset.reference = torch.full((len(dataset), 3), -30.0)
        batch = TripletCollator(model.pad_id)([dataset[i] for i in range(4)])
        _align_loss(model, batch, cfg).backward()
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    plain, checkpointed = gradients
    assert plain.keys() == checkpointed.keys() and any(g.abs().sum() > 0 for g in plain.values())
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6, rtol=1e-4), name


def test_compiled_layers_give_the_same_loss_and_gradients_and_save_the_same_names(tmp_path, data, registry):
    """LoRA: one compiled layer graph serves the encoder (adapters on) and the decoder (adapters off)."""
    from arretrieve.training.model_setup import save_trained
    entry = registry.get("tiny")
    triplets, _ = load_triplets(str(data[1]), TrainConfig(name="x").fields, 2)
    losses, gradients = [], []
    for compiled in (False, True):
        cfg = config(tmp_path, data, lora_dropout=0.0, compile_layers=compiled)
        model = build_trainable(entry, cfg, torch.float32).train()
        dataset = TripletSet(model, triplets, entry.prompts["i_next"], entry.prompts["i_self"], 64, _needs(cfg))
        dataset.reference = torch.full((len(dataset), 3), -30.0)
        batch = TripletCollator(model.pad_id)([dataset[i] for i in range(4)])
        loss = _align_loss(model, batch, cfg)
        loss.backward()
        losses.append(loss.item())
        gradients.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
        save_trained(model, tmp_path / f"saved-{compiled}")
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert gradients[0].keys() == gradients[1].keys()
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], atol=1e-6, rtol=1e-4), name
    assert sorted(p.name for p in (tmp_path / "saved-True").iterdir()) == sorted(p.name for p in (tmp_path / "saved-False").iterdir())


def test_in_batch_alignment_loss_equals_a_hand_computation():
    from arretrieve.training.steps import split_own

    # Two rows, targets [pos_0, pos_1, neg_0, neg_1]: row i's own positive is column i.
    scores = torch.tensor([[-10.0, -30.0, -25.0, -40.0], [-28.0, -12.0, -33.0, -20.0]])
    reference = torch.tensor([[-11.0, -29.0, -26.0, -38.0], [-27.0, -13.0, -30.0, -22.0]])
    b = torch.tensor([-9.0, -14.0])
    a, c = split_own(scores)
    ref_pos, ref_neg = split_own(reference)
    assert a.tolist() == [-10.0, -12.0] and c.tolist() == [[-30.0, -25.0, -40.0], [-28.0, -33.0, -20.0]]
    for form in ("code", "paper"):
        expected = sum(_hand_loss(a[i].item(), b[i].item(), c[i].tolist(), ref_pos[i].item(), ref_neg[i].tolist(), 0.1, 0.1, form)
                       for i in range(2)) / 2
        assert alignment_loss(a, b, c, ref_pos, ref_neg, 0.1, 0.1, form).item() == pytest.approx(expected, rel=1e-6)


def _alignment_batch(model, entry, data, count=4):
    """Every part a triplet batch can carry (each objective's stage 2 reads its own)."""
    triplets, _ = load_triplets(str(data[1]), TrainConfig(name="x").fields, 2)
    every_need = frozenset(need for o in OBJECTIVES for stage in o.stages for term in stage.terms for need in term.needs)
    dataset = TripletSet(model, triplets, entry.prompts["i_next"], entry.prompts["i_self"], 64, every_need)
    dataset.reference = torch.full((len(dataset), 3), -30.0)
    return TripletCollator(model.pad_id)([dataset[i] for i in range(count)])


def test_in_batch_parts_score_every_target_against_every_query(tmp_path, data, registry):
    from arretrieve.training.steps import alignment_log_probs, in_batch_alignment_parts

    cfg = config(tmp_path, data, lora_dropout=0.0)
    model = build_trainable(registry.get("tiny"), cfg, torch.float32).eval()
    batch = _alignment_batch(model, registry.get("tiny"), data)
    with torch.no_grad():
        a, b, c, ref_pos, ref_neg, _, _ = in_batch_alignment_parts(model, model, batch)
        own_a, own_b, own_c, _, _ = alignment_log_probs(model, batch)
    # 4 rows × (4 positives + 8 negatives): each row has 11 negatives, its own hard negatives among them.
    assert c.shape == (4, 11) and ref_neg.shape == (4, 11)
    assert torch.allclose(a, own_a, atol=1e-4) and torch.allclose(b, own_b, atol=1e-4)
    # Row 0's hard negatives are targets 4 and 8 (negatives ordered by index j, then row): columns 3 and 7 of its others.
    assert torch.allclose(c[0, [3, 7]], own_c[0], atol=1e-4)
    assert torch.equal(ref_pos, a) and torch.equal(ref_neg, c)  # the reference model here is the model itself


def test_hybrid_loss_is_alignment_plus_weighted_info_nce(tmp_path, data, registry):
    entry = registry.get("tiny")
    cfg = config(tmp_path, data, lora_dropout=0.0, objective="autoregembed+contrastive", contrastive_weight=0.5, temperature=0.1)
    model = build_trainable(entry, cfg, torch.float32).eval()
    batch = _alignment_batch(model, entry, data)
    with torch.no_grad():
        hybrid = _align_loss(model, batch, cfg).item()
        a, b, c, e_q, e_pos = alignment_log_probs(model, batch)
        aligned = alignment_loss(a, b, c, batch["reference"][:, 0], batch["reference"][:, 1:], cfg.beta, cfg.tau).item()
        negatives = torch.stack([model.embed(*model.pad([ids]))[0] for ids in
                                 [batch["negative_ids"][i, : batch["negative_lengths"][i]].tolist() for i in range(8)]])
        queries, positives = model.pool(e_q), model.pool(e_pos)
        candidates = torch.cat([positives, negatives])  # in-batch: every positive and negative, own positive at i
        scores = queries @ candidates.T / 0.1
        contrastive = sum(-(scores[i, i] - torch.logsumexp(scores[i], 0)).item() for i in range(4)) / 4
    assert hybrid == pytest.approx(aligned + 0.5 * contrastive, rel=1e-5)


def test_contrastive_compression_loss_is_info_nce_plus_the_weighted_decoder_loss_of_each_query(tmp_path, data, registry):
    entry = registry.get("tiny")
    cfg = config(tmp_path, data, lora=False, objective="contrastive+compression", compression_weight=0.3,
                 reconstruction_weight=0.2, query_reconstruction_weight=0.1, temperature=0.1)
    model = build_trainable(entry, cfg, torch.float32).eval()
    triplets, _ = load_triplets(str(data[1]), cfg.fields, 2)
    dataset = TripletSet(model, triplets[:4], entry.prompts["query"], entry.prompts["document"], 64, _needs(cfg))
    batch = TripletCollator(model.pad_id)([dataset[i] for i in range(4)])
    with torch.no_grad():
        combined = _align_loss(model, batch, cfg).item()
        contrastive = _align_loss(model, batch, replace(cfg, objective="contrastive", compression_weight=1.0,
                                                        reconstruction_weight=0.0, query_reconstruction_weight=0.0)).item()

        def decoder_loss(sources, prompt, texts):
            """By hand: the frozen decoder (the base) reads each source's k states, then the text's tokens and EOS."""
            nats, tokens = 0.0, 0
            with model.frozen_decoder() as decoder:
                for source, text in zip(sources, texts):
                    states = model.compress(*model.pad(model.encode_texts([source], prompt).input_ids))
                    target = model.encode_targets([text], 64).input_ids[0]
                    inputs = torch.cat([states, decoder.get_input_embeddings()(torch.tensor([target]))], dim=1)
                    logits = decoder(inputs_embeds=inputs).logits[0, model.num_compress_tokens - 1 : -1]
                    nats -= torch.log_softmax(logits, -1)[torch.arange(len(target)), target].sum().item()
                    tokens += len(target)
            return nats / tokens

        queries, documents = [t.query for t in triplets[:4]], [t.pos for t in triplets[:4]]
        query_from_document = decoder_loss(documents, entry.prompts["document"], queries)
        document_from_itself = decoder_loss(documents, entry.prompts["document"], documents)
        query_from_itself = decoder_loss(queries, entry.prompts["query"], queries)
    assert combined == pytest.approx(contrastive + 0.3 * query_from_document + 0.2 * document_from_itself
                                     + 0.1 * query_from_itself, rel=1e-5)


def test_contrastive_compression_trains_from_a_base_and_refuses_other_pooling(tmp_path, data, registry):
    result = train(config(tmp_path, data, name="compressing", objective="contrastive+compression"), registry=registry)
    assert result.entry.provenance["objective"] == "contrastive+compression" and result.entry.pooling == "compress-mean"
    assert math.isfinite(result.final_losses["align"]) and "compress" not in result.final_losses
    with pytest.raises(ArrError, match="pooling must be compress-mean"):
        config(tmp_path, data, objective="contrastive+compression", pooling="mean")
    with pytest.raises(ArrError, match="reconstruction_weight belongs to the contrastive"):
        config(tmp_path, data, objective="contrastive", reconstruction_weight=0.5)
    with pytest.raises(ArrError, match="query_reconstruction_weight belongs to the contrastive"):
        config(tmp_path, data, objective="contrastive", query_reconstruction_weight=0.5)


@pytest.mark.parametrize("settings", [dict(in_batch_alignment=True), dict(objective="autoregembed+contrastive"),
                                      dict(in_batch_alignment=True, objective="autoregembed+contrastive")])
def test_new_alignment_variants_train_and_register(tmp_path, data, registry, settings):
    result = train(config(tmp_path, data, name="variant", **settings), registry=registry)
    assert result.entry.provenance["hyperparameters"]["in_batch_alignment"] == settings.get("in_batch_alignment", False)
    assert result.entry.provenance["objective"] == settings.get("objective", "autoregembed")
    assert math.isfinite(result.final_losses["align"])


def test_trainable_norm_is_saved_loaded_and_merged(tmp_path, data, registry):
    from arretrieve.modeling.loading import load_autoregembed
    from arretrieve.training.model_setup import final_norm_name, load_trained_state, save_trained

    entry = registry.get("tiny")
    cfg = config(tmp_path, data, train_norm=True, lora_dropout=0.0)
    trained = build_trainable(entry, cfg, torch.float32)
    assert final_norm_name(trained._base_lm) == "model.norm"
    norm_params = [n for n, p in trained.named_parameters() if p.requires_grad and "norm" in n]
    assert norm_params and all("model.norm" in n for n in norm_params)  # the per-layer norms stay frozen
    with torch.no_grad():
        for parameter in trained.parameters():
            if parameter.requires_grad:
                parameter.add_(0.1 * torch.randn_like(parameter))
    trained.eval()
    with torch.no_grad(), trained.frozen_decoder() as decoder:  # the decoder keeps the released norm
        assert torch.equal(decoder.get_decoder().norm.weight, torch.ones(64))
    save_trained(trained, tmp_path / "saved")
    fresh = build_trainable(entry, cfg, torch.float32)
    load_trained_state(fresh, tmp_path / "saved")
    loaded = dict(fresh.named_parameters())
    assert all(torch.equal(p, loaded[n]) for n, p in trained.named_parameters() if p.requires_grad)
    registry.add(tiny_entry(entry.base, name="normed", weights="adapter", weights_path=str(tmp_path / "saved")))
    merged = load_autoregembed(registry.get("normed"), torch.float32, torch.device("cpu"))
    ids, lengths = trained.pad(trained.encode_texts(SENTENCES[:3], entry.prompts["query"]).input_ids)
    with torch.no_grad():
        assert torch.allclose(merged.embed(ids, lengths), trained.embed(ids, lengths), atol=1e-5)
        assert not torch.equal(merged._base_lm.get_decoder().norm.weight, torch.ones(64))


def test_keep_best_restores_the_best_evaluations_weights(tmp_path, data, registry, monkeypatch):
    from safetensors.torch import load_file

    from arretrieve.training.evaluation import RetrievalCheck

    scripted = iter([0.2, 0.9, 0.5, 0.4])  # steps 0, 1, 2, 3: step 1 is the best
    monkeypatch.setattr(RetrievalCheck, "measure", lambda self, model: {"ndcg@10": next(scripted), "recall@10": 0.0})
    result = train(config(tmp_path, data, name="kept", stage="compress", compress_max_steps=3, eval_steps=1, keep_checkpoints=True,
                          eval_data=str(eval_folder(tmp_path)), eval_split="dev", keep_best="ndcg@10"), registry=registry)
    stage = result.run_dir / "compress"
    assert json.loads((stage / "best" / "best.json").read_text()) == {"metric": "ndcg@10", "value": 0.9, "step": 1}
    for name in ("adapter_model.safetensors", "compress_embeddings.safetensors"):
        best, final = load_file(str(stage / "best" / name)), load_file(str(stage / "final" / name))
        assert all(torch.equal(best[k], final[k]) for k in best), name
    unkept = train(config(tmp_path / "b", data, name="unkept", stage="compress", compress_max_steps=3), registry=registry)
    rows = [load_file(str(r.run_dir / "compress" / "final" / "compress_embeddings.safetensors"))["compress_embeddings"]
            for r in (result, unkept)]
    assert not torch.equal(*rows)  # the last step's weights were not the ones kept


def test_a_finished_model_lives_under_the_toolkit_home_and_its_run_keeps_only_final_weights(tmp_path, data, registry):
    import shutil

    result = train(config(tmp_path, data, name="product", stage="compress", compress_max_steps=3, save_steps=1), registry=registry)
    stage = result.run_dir / "compress"
    assert not list(stage.glob("checkpoint-*")) and (stage / "final").is_dir()
    entry = registry.get("product")
    assert Path(entry.weights_path) == registry.weights_dir("product")
    shutil.rmtree(result.run_dir)  # the model does not need its run folder
    from arretrieve.encoding import load_embedder

    assert load_embedder(registry.get("product")).encode(["x"], role="query").shape == (1, 64)
    registry.remove("product")
    assert not registry.weights_dir("product").exists()


def test_a_run_that_failed_before_its_first_step_starts_again_without_overwrite(tmp_path, data, registry, monkeypatch):
    import arretrieve.training.run as run_module

    def fail(*args, **kwargs):
        raise RuntimeError("out of memory while loading")

    with monkeypatch.context() as patched:
        patched.setattr(run_module, "build_trainable", fail)
        with pytest.raises(RuntimeError):
            train(config(tmp_path, data, name="retry", stage="compress"), registry=registry)
    assert (tmp_path / "run" / "config.json").is_file()
    assert train(config(tmp_path, data, name="retry", stage="compress"), registry=registry).steps == {"compress": 3}


def test_logging_reaches_short_runs_and_report_to_is_checked(tmp_path, data, registry):
    from arretrieve.training.trainer import training_arguments

    cfg = config(tmp_path, data, logging_steps=10, compress_max_steps=3)
    assert training_arguments(cfg, "compress", tmp_path, torch.float32, torch.device("cpu")).logging_steps == 3
    with pytest.raises(ArrError, match="report_to must be one of"):
        config(tmp_path, data, report_to="mlflow")


def test_fsdp_is_refused_where_it_would_not_shard(tmp_path, data, registry, monkeypatch):
    """On a CPU HF Trainer would run plain DDP under --fsdp: refused before the run folder exists."""
    from arretrieve.training.run import check_sharding

    cfg = config(tmp_path, data, name="sharded", fsdp=True)
    with pytest.raises(ArrError, match="--fsdp needs GPUs: on a CPU, HF Trainer"):
        train(cfg, registry=registry)
    assert not (tmp_path / "runs" / "sharded").exists() and not Path("runs/sharded").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    with pytest.raises(ArrError, match="run arr under torchrun"):
        check_sharding(cfg, torch.device("cuda"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_sharding(cfg, torch.device("cuda"))


def test_keep_best_needs_its_measurement(tmp_path, data):
    with pytest.raises(ArrError, match="keep_best ndcg@10 needs eval_data"):
        config(tmp_path, data, keep_best="ndcg@10")
    with pytest.raises(ArrError, match="keep_best probe_specific_share needs probe_data"):
        config(tmp_path, data, keep_best="probe_specific_share")
    with pytest.raises(ArrError, match="keep_best must be one of"):
        config(tmp_path, data, keep_best="loss")


def probe_folder(root):
    """20 held-out (document, query) pairs: one probe group."""
    rows = [{"_id": f"d{i}", "title": "", "text": SENTENCES[i % 6] + f" item {i}"} for i in range(20)]
    folder = write_beir_corpus(root / "probe", rows)
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i:02d}", "text": r["text"][:15]}) + "\n" for i, r in enumerate(rows)))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("".join(f"q{i:02d}\td{i}\t1\n" for i in range(20)))
    return folder


def test_probe_is_measured_during_training(tmp_path, data, registry):
    folder = probe_folder(tmp_path)
    result = train(config(tmp_path, data, name="probed", stage="compress", compress_max_steps=2, eval_steps=1,
                          probe_data=str(folder), probe_pairs=20, keep_best="probe_identification"), registry=registry)
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in records if "probe_specific_share" in r]
    assert [r["step"] for r in probed] == [0, 1, 2] and all(r["probe"] == "probe" for r in probed)
    assert all(0 <= r["probe_identification"] <= 1 for r in probed)


@pytest.mark.parametrize(("shares", "warned"), [((0.01, 0.03, 0.02), True), ((0.01, 0.30, 0.02), False)])
def test_a_best_share_within_the_noise_is_reported(tmp_path, data, registry, monkeypatch, caplog, shares, warned):
    from arretrieve.evaluation.compression_probe import CompressionProbe

    measure = CompressionProbe.measure
    scripted = iter(shares)  # steps 0, 1, 2, each with a standard error of 0.02: noise below 0.04
    monkeypatch.setattr(CompressionProbe, "measure", lambda self, model: replace(
        measure(self, model), specific_share=next(scripted), specific_share_stderr=0.02))
    with caplog.at_level(logging.WARNING, logger="arretrieve"):
        result = train(config(tmp_path, data, name="noisy", stage="compress", compress_max_steps=2, eval_steps=1,
                              probe_data=str(probe_folder(tmp_path)), probe_pairs=20, keep_best="probe_specific_share"),
                       registry=registry)
    best = json.loads((result.run_dir / "compress" / "best" / "best.json").read_text())
    assert (best["value"], best["step"], best["noise"]) == (shares[1], 1, pytest.approx(0.04))
    assert ("the best document-specific share, 0.030 at step 1, is within the noise" in caplog.text) == warned


def test_a_trained_model_loads_with_the_decoder_it_was_probed_against(tmp_path, data, registry):
    from arretrieve.evaluation.beir_data import load_dataset
    from arretrieve.evaluation.compression_probe import CompressionProbe, pairs_from_beir
    from arretrieve.modeling.loading import load_autoregembed

    folder = probe_folder(tmp_path)
    result = train(config(tmp_path, data, name="probed", stage="compress", compress_max_steps=2, eval_steps=2,
                          compress_lr=1e-2, probe_data=str(folder), probe_pairs=20), registry=registry)
    last = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines() if "probe_generic_gain" in line][-1]
    entry = registry.get("probed")
    probe = CompressionProbe(pairs_from_beir(load_dataset(str(folder), "test"), 20), entry.template("i_next"), entry.template("i_self"))
    standalone = probe.measure(load_autoregembed(entry, torch.float32, torch.device("cpu"), frozen_decoder=True))
    for name in ("specific_share", "generic_gain", "state_norm"):
        assert getattr(standalone, name) == pytest.approx(last[f"probe_{name}"], abs=1e-3, nan_ok=True)
    # Rates over 20 pairs: the merged weights round differently from base + adapter, which can
    # flip one near-tie among the barely trained model's candidates (one pair = 0.05).
    for name in ("identification", "self_identification"):
        assert getattr(standalone, name) == pytest.approx(last[f"probe_{name}"], abs=0.05 + 1e-6)
    # Without the base as decoder, the merged (trained) weights would score the targets.
    own = CompressionProbe(probe.pairs, entry.template("i_next"), entry.template("i_self"))
    assert own.measure(load_autoregembed(entry, torch.float32, torch.device("cpu"))).plain_right != pytest.approx(standalone.plain_right, abs=1e-3)


def test_length_grouped_batches_hold_texts_of_similar_length(tmp_path, data, registry):
    from arretrieve.training.batches import CompressionCollator, CompressionSet
    from arretrieve.training.data import load_compression_data
    from arretrieve.training.trainer import AutoRegEmbedTrainer, StepModule, training_arguments

    cfg = config(tmp_path, data, group_by_length=True, compress_batch_size=3)
    model = build_trainable(registry.get("tiny"), cfg, torch.float32)
    examples, _ = load_compression_data(str(data[0]), cfg.fields)
    dataset = CompressionSet(model, examples, 64)
    trainer = AutoRegEmbedTrainer(model=StepModule(model, lambda *a: None, cfg), train_dataset=dataset,
                                  args=training_arguments(cfg, "compress", tmp_path / "out", torch.float32, torch.device("cpu")),
                                  data_collator=CompressionCollator(model.pad_id))
    order = list(trainer._get_train_sampler())
    assert sorted(order) == list(range(len(dataset)))  # every example once
    padded = sum(3 * max(dataset.lengths[i] for i in order[s : s + 3]) for s in range(0, len(order), 3))
    shuffled = list(range(len(dataset)))
    random_padded = sum(3 * max(dataset.lengths[i] for i in shuffled[s : s + 3]) for s in range(0, len(shuffled), 3))
    assert padded <= random_padded


def test_state_scale_trains_saves_loads_and_leaves_the_vectors_alone(tmp_path, data, registry):
    from safetensors.torch import load_file

    from arretrieve.modeling.loading import load_autoregembed

    result = train(config(tmp_path, data, name="scaled", state_scale=True), registry=registry)
    saved = load_file(str(result.run_dir / "align" / "final" / "compress_embeddings.safetensors"))
    assert saved["state_scale"].shape == (1,) and 0 < saved["state_scale"].item()
    stage1 = load_file(str(result.run_dir / "compress" / "final" / "compress_embeddings.safetensors"))["state_scale"]
    model = load_autoregembed(registry.get("scaled"), torch.float32, torch.device("cpu"))
    assert model.state_scale.item() == pytest.approx(saved["state_scale"].item()) != stage1.item()  # stage 2 trained it on
    ids, lengths = model.pad(model.encode_texts(SENTENCES[:2], registry.get("scaled").prompts["query"]).input_ids)
    targets, target_lengths = model.pad(model.encode_targets(SENTENCES[:2]).input_ids)
    with torch.no_grad():
        states, vectors = model.compress(ids, lengths), model.embed(ids, lengths)
        scaled = model.score_padded(states, targets, target_lengths)
        model.state_scale.fill_(1.0)
        assert not torch.allclose(model.score_padded(states, targets, target_lengths), scaled)
        assert torch.equal(model.embed(ids, lengths), vectors)  # the scale reaches the decoder only


def test_a_bad_name_is_refused_before_anything_runs(tmp_path, data):
    with pytest.raises(ArrError, match="invalid name"):
        config(tmp_path, data, name="../../x")


def test_every_objective_is_accepted_by_arr_train_and_documented_from_its_record():
    from typer.testing import CliRunner

    from arretrieve.cli.app import app

    help_text = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output.split())
    docs = (Path(__file__).parents[1] / "docs" / "training.md").read_text(encoding="utf-8")
    for record in OBJECTIVES:
        stage = "all" if record.stage("compress") else "align"
        assert TrainConfig(name="x", objective=record.name, stage=stage).stages() == record.stages
        assert f"{record.name}: " in help_text
        assert f"`{record.name}`" in docs and " ".join(record.summary.split()) in " ".join(docs.split()), record.name
        for term in (t for s in record.stages for t in s.terms):
            assert f"`{term.name}`" in docs, (record.name, term.name)


def test_infonce_batches_carry_no_decoder_targets(tmp_path, data, registry):
    cfg = config(tmp_path, data, objective="contrastive", stage="align")
    model = build_trainable(registry.get("tiny"), cfg, torch.float32)
    triplets, _ = load_triplets(str(data[1]), cfg.fields, 2)
    dataset = TripletSet(model, triplets, "{text}", "{text}", 64, _needs(cfg))
    batch = TripletCollator(model.pad_id)([dataset[i] for i in range(4)])
    assert sorted(batch) == ["encoder_ids", "encoder_lengths", "negative_ids", "negative_lengths"]
    with pytest.raises(ArrError, match="temperature belongs to the contrastive"):
        config(tmp_path, data, objective="autoregembed", temperature=0.2)
    with pytest.raises(ArrError, match="has no compress stage"):
        config(tmp_path, data, objective="contrastive", stage="compress")


@pytest.mark.parametrize("recipe", sorted(Path(__file__).parents[1].glob("benchmarks/replicate*.toml")), ids=lambda p: p.name)
def test_every_benchmark_config_is_a_valid_config(recipe):
    config = build_config(read_config_file(recipe), {"name": "check"})
    assert config.base and config.stage in ("compress", "align", "all")


def test_resume_refuses_other_settings_or_data_and_accepts_the_same_data_elsewhere(tmp_path, data, registry):
    started = config(tmp_path, data, name="resumable", objective="contrastive", stage="align", align_max_steps=2)
    train(started, registry=registry)

    with pytest.raises(ArrError, match=r"cannot resume .*align\.lr 5e-05 -> 0\.001"):
        train(replace(started, resume=True, align=replace(started.align, lr=1e-3)), registry=registry)
    edited = tmp_path / "edited.jsonl"
    edited.write_text(data[1].read_text().replace("with", "without"))
    with pytest.raises(ArrError, match=r"data_fingerprints\.alignment"):
        train(replace(started, resume=True, alignment_data=str(edited)), registry=registry)

    moved = tmp_path / "moved" / "triplets.jsonl"
    moved.parent.mkdir()
    moved.write_text(data[1].read_text())
    train(replace(started, resume=True, alignment_data=str(moved), logging_steps=2, eval_steps=5), registry=registry)


@pytest.fixture
def shipped_forms(tmp_path, data, registry):
    """Tiny copies of the shipped models' forms: a rank-8 adapter extracted from full fine-tuning (the
    default: LoRA pairs on every projection and the token embedding, a state scale) and a LoRA-trained
    adapter (autoregembed-smollm2-135m)."""
    from arretrieve.export.arretrieve_folder import export_arretrieve_folder
    from arretrieve.registry.model_folder import import_model_folder

    train(config(tmp_path / "full", data, name="tiny-full", lora=False, state_scale=True, objective="contrastive+compression",
                 stage="align", warmup_ratio=0.0), registry=registry)
    export_arretrieve_folder(registry.get("tiny-full"), tmp_path / "low-rank", name="tiny-default-form", low_rank=8)
    registry.add(import_model_folder(tmp_path / "low-rank"))
    train(config(tmp_path / "lora", data, name="tiny-lora-form", warmup_ratio=0.0), registry=registry)
    return ["tiny-default-form", "tiny-lora-form"]


@pytest.mark.parametrize("lora", [True, False])
def test_every_shipped_form_continues_for_two_steps_in_either_form(tmp_path, data, registry, shipped_forms, lora):
    form = "lora" if lora else "full"
    for base in shipped_forms:
        result = train(config(tmp_path / f"{base}-{form}", data, name=f"{base}-more-{form}", base=base, lora=lora,
                              objective="contrastive", stage="align", align_max_steps=2), registry=registry)
        assert result.steps == {"align": 2} and registry.get(f"{base}-more-{form}").weights == ("adapter" if lora else "full")


@pytest.mark.parametrize("settings, message", [
    (dict(compress_lr=True), "lr = True"), (dict(compress_epochs=-1), "epochs must be positive"),
    (dict(compress_max_steps=0), "max_steps -1"), (dict(num_compress_tokens=0), "num_compress_tokens"),
    (dict(seed="7"), "seed = '7'"), (dict(warmup_ratio=1.5), "warmup_ratio"),
])
def test_settings_of_the_wrong_type_or_range_are_refused_before_any_model_loads(tmp_path, data, settings, message):
    with pytest.raises(ArrError, match=message):
        config(tmp_path, data, **settings)


def test_a_run_with_no_step_is_an_error_and_a_foreign_folder_is_never_deleted(tmp_path, data, registry):
    with pytest.raises(ArrError, match="ran no training step"):
        train(config(tmp_path, data, name="empty", stage="compress", compress_examples=2, compress_batch_size=4),
              registry=registry)
    assert "empty" not in registry.names()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(ArrError, match="holds no run of arr train"):
        train(config(tmp_path, data, name="intruder", stage="compress", output_dir=str(foreign), overwrite=True),
              registry=registry)
    assert (foreign / "thesis.tex").read_text() == "years of work"


def test_a_config_file_cannot_send_a_run_outside_the_working_folder_and_home(tmp_path, monkeypatch, isolated_home):
    """With `overwrite = true` such a file would clear a folder of its own choosing (an old run of
    the user's, say); naming the folder with --output-dir is what makes it the user's choice."""
    from typer.testing import CliRunner

    from arretrieve.cli.app import app
    from arretrieve.training import read_config_file

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "config.json").write_text("{}")  # it looks like an old run: overwrite would clear it
    (victim / "notes.txt").write_text("keep")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    file = work / "hostile.toml"
    file.write_text(f'name = "x"\nbase = "tiny"\nobjective = "contrastive"\noutput_dir = "{victim}"\noverwrite = true\n')
    ran = CliRunner().invoke(app, ["train", "--config", str(file)])
    assert "outside the working folder" in str(ran.exception) and "pass --output-dir" in str(ran.exception)
    assert (victim / "notes.txt").read_text() == "keep"
    assert build_config(read_config_file(file), {"output_dir": str(victim)}, file).output_dir == str(victim)
    for inside in (work / "runs" / "x", isolated_home / "runs" / "x", "runs/x"):
        file.write_text(f'name = "x"\noutput_dir = "{inside}"\n')
        assert build_config(read_config_file(file), {}, file).output_dir == str(inside)
