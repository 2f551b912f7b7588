import json

import pytest
import torch

from arretrieve.errors import ArrError
from arretrieve.evaluation.beir_data import load_dataset
from arretrieve.evaluation.compression_probe import CompressionProbe, ProbePairs, pairs_from_beir
from conftest import write_beir_corpus


class ScriptedModel:
    """A stand-in whose scores are known: text "s<i>" or "t<i>" is token i, its "states" are i.

    Per target token the decoder scores -1 after the right states and -2 after any other (so the
    states carry half of what the plain text does: -1 vs -3), -4 after BOS alone."""

    num_compress_tokens, hidden_size, bos_ids, eos_id = 1, 1, [99], 98
    device = torch.device("cpu")
    training = False

    def eval(self):
        return self

    class _base_lm:
        @staticmethod
        def get_input_embeddings():
            return torch.nn.Embedding.from_pretrained(torch.full((3, 4), 0.5))

    def train(self, mode=True):
        return self

    def encode_texts(self, texts, template):
        class Encoded:
            input_ids = [[int(t[1:]), 97] for t in texts]  # text id, then a "compress token"
        return Encoded()

    def encode_targets(self, texts, max_length=None):
        class Encoded:
            input_ids = [[int(t[1:])] * 2 for t in texts]  # two tokens each
        return Encoded()

    def pad(self, sequences):
        return torch.tensor(sequences), torch.tensor([len(s) for s in sequences])

    def compress(self, ids, lengths):
        return ids[:, :1].float().unsqueeze(-1)

    def score_padded(self, states, targets, lengths):
        right = states[:, 0, 0].long() == targets[:, 0]
        return torch.where(right, -1.0, -2.0) * lengths

    def score_after_tokens(self, prefixes, targets):
        lengths = torch.tensor([len(t) for t in targets])
        per_token = [-4.0 if p == [99] else (-1.0 if p[0] == t[0] else -3.0) for p, t in zip(prefixes, targets)]
        return torch.tensor(per_token) * lengths, lengths


def test_the_probe_gives_the_known_answer():
    pairs = ProbePairs([f"s{i}" for i in range(45)], [f"t{i}" for i in range(45)], "scripted")
    result = CompressionProbe(pairs, "{text}", "{text}", group_size=20).measure(ScriptedModel())
    assert result.pairs == 40  # whole groups only
    assert (result.right, result.random, result.bos) == (-1.0, -2.0, -4.0)
    assert (result.plain_right, result.plain_random) == (-1.0, -3.0)
    assert result.specific_share == pytest.approx(0.5) and result.specific_share_stderr == 0.0  # every target alike
    assert result.identification == 1.0 and result.self_identification == 1.0
    assert result.generic_gain == pytest.approx(2.0)
    assert result.token_norm == pytest.approx(1.0) and result.state_norm == pytest.approx(sum(range(40)) / 40)


def test_states_that_ignore_their_source_score_zero_share_and_chance():
    class Blind(ScriptedModel):
        def compress(self, ids, lengths):
            return torch.zeros(ids.shape[0], 1, 1)  # every text gets the same states

        def score_padded(self, states, targets, lengths):
            return torch.full((targets.shape[0],), -2.0) * lengths

    pairs = ProbePairs([f"s{i}" for i in range(20)], [f"t{i}" for i in range(20)], "blind")
    result = CompressionProbe(pairs, "{text}", "{text}").measure(Blind())
    assert result.specific_share == 0.0 and result.generic_gain == pytest.approx(2.0)
    assert result.identification == pytest.approx(1 / 20)  # ties go to the first: one right in 20


def test_the_shares_standard_error_is_over_targets():
    class HalfRight(ScriptedModel):
        def score_padded(self, states, targets, lengths):  # even targets read their states, odd ones do not
            right = (states[:, 0, 0].long() == targets[:, 0]) & (targets[:, 0] % 2 == 0)
            return torch.where(right, -1.0, -2.0) * lengths

    pairs = ProbePairs([f"s{i}" for i in range(20)], [f"t{i}" for i in range(20)], "half")
    result = CompressionProbe(pairs, "{text}", "{text}").measure(HalfRight())
    # Right minus random per target: 1 for the 10 even ones, 0 for the odd; the plain-text gap is 2.
    assert result.specific_share == pytest.approx(0.25)
    assert result.specific_share_stderr == pytest.approx((20 / 19 * 0.25) ** 0.5 / 20 ** 0.5 / 2)


def test_too_few_pairs_are_refused():
    with pytest.raises(ArrError, match="at least 20 pairs"):
        CompressionProbe(ProbePairs(["s1"] * 5, ["t1"] * 5, "small"), "{text}", "{text}")


def test_pairs_come_from_queries_with_one_relevant_document(tmp_path):
    folder = write_beir_corpus(tmp_path / "set", [{"_id": f"d{i}", "title": "", "text": f"doc {i}"} for i in range(3)])
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(3)))
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("q0\td0\t1\nq1\td1\t1\nq1\td2\t1\nq2\td2\t1\n")
    pairs = pairs_from_beir(load_dataset(str(folder)))
    assert pairs.sources == ["doc 0", "doc 2"] and pairs.targets == ["query 0", "query 2"]


def test_the_probe_runs_on_a_real_tiny_model(tiny_llama_dir):
    from arretrieve.modeling.loading import load_autoregembed
    from conftest import SENTENCES, tiny_entry

    entry = tiny_entry(tiny_llama_dir)
    model = load_autoregembed(entry, torch.float32, torch.device("cpu"))
    sources = [SENTENCES[i % 6] + f" number {i}" for i in range(20)]
    pairs = ProbePairs(sources, [s[:12] for s in sources], "tiny")
    probe = CompressionProbe(pairs, entry.template("i_next"), entry.template("i_self"), batch_size=7)
    result = probe.measure(model)
    assert 0 <= result.identification <= 1 and 0 <= result.self_identification <= 1
    # The plain-text side equals the causal LM's own log-probabilities of the target after the prefix.
    prefix, target = [5, 9, 14], [20, 21, model.eos_id]
    with torch.no_grad():
        logits = model.causal_lm(input_ids=torch.tensor([prefix + target])).logits[0].log_softmax(-1)
    expected = sum(logits[len(prefix) - 1 + t, token].item() for t, token in enumerate(target))
    summed, _ = model.score_after_tokens([prefix, prefix[:1]], [target, target[:1]])
    assert summed[0].item() == pytest.approx(expected, abs=1e-4)
    # Length-ordered batches give the scores of one-at-a-time scoring.
    ids, lengths = model.pad(model.encode_targets([pairs.targets[3]]).input_ids)
    states = model.compress(*model.pad(model.encode_texts([sources[3]], entry.template("i_next")).input_ids))
    alone = (model.score_padded(states, ids, lengths) / lengths).item()
    assert result.right == pytest.approx(probe._score_states(model, probe._states(model, sources, entry.template("i_next")),
                                                             model.encode_targets(pairs.targets).input_ids,
                                                             [(i, i) for i in range(20)]).mean().item(), abs=1e-5)
    assert probe._score_states(model, probe._states(model, sources, entry.template("i_next")),
                               model.encode_targets(pairs.targets).input_ids, [(3, 3)]).item() == pytest.approx(alone, abs=1e-5)
