"""Hard-negative mining: known answers on fixed scores, BM25 and a tiny model end to end, the CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from arretrieve.cli.app import app
from arretrieve.errors import ArrError
from arretrieve.training.config import FieldMap
from arretrieve.training.data import load_triplets
from arretrieve.training.mining import MinedRow, MiningSettings, mine, mine_negatives
from conftest import write_beir_corpus

runner = CliRunner()

ROWS = [
    {"query": "fast revision control system", "pos": "Git is a fast distributed revision control system.",
     "neg": ["A small image viewer."]},
    {"query": "image viewer for the terminal", "pos": "Shows images in a terminal with unicode blocks.",
     "neg": ["A spell checker for many languages."]},
    {"query": "spell checker library", "pos": "Hunspell is a spell checker library and program.",
     "neg": ["Git is a fast distributed revision control system."]},
    {"query": "revision control for large binary files", "pos": "Stores large binary files outside the revision history of git.",
     "neg": ["Shows images in a terminal with unicode blocks."]},
]


def fixed_scorer(matrix):
    matrix = np.asarray(matrix, dtype=np.float32)
    return lambda rows: matrix[list(rows)]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_mine_takes_the_best_candidate_left_after_the_positive_and_the_near_positives():
    rows = [MinedRow("q0", "a", ["own"]), MinedRow("q1", "b", [])]
    texts = ["a", "b", "c", "d", "own"]
    scores = [[5.0, 4.9, 4.0, 1.0, 0.5],  # b scores 0.98 x the positive's 5.0: dropped; c is the best left
              [1.0, 2.0, 3.0, 0.0, 0.1]]  # c outscores the positive b: dropped; a is the best left
    mined, report = mine(rows, texts, fixed_scorer(scores), MiningSettings(negatives=1, sampling="top"), "fixed")
    assert [row.negs for row in mined] == [["c", "own"], ["a"]]  # mined first, the row's own after
    assert (report.mined, report.filtered_by_ratio, report.short_rows) == (2, 2, 0)

    unfiltered, _ = mine(rows, texts, fixed_scorer(scores), MiningSettings(sampling="top", max_score_ratio=None, keep_negatives=False))
    assert [row.negs for row in unfiltered] == [["b"], ["c"]]


def test_an_own_negative_that_was_mined_is_not_repeated():
    mined, _ = mine([MinedRow("q", "a", ["c", "d"])], ["a", "c", "d"], fixed_scorer([[1.0, 0.5, 0.1]]),
                    MiningSettings(sampling="top"))
    assert mined[0].negs == ["c", "d"]


def test_random_sampling_stays_in_the_top_depth_and_is_seeded():
    texts = [f"t{i}" for i in range(20)]
    rows = [MinedRow(f"q{i}", "t0", []) for i in range(30)]
    scores = np.tile(np.concatenate([[100.0], np.arange(19, 0, -1, dtype=np.float32)]), (30, 1))  # t1 best … t19 worst
    settings = MiningSettings(negatives=2, depth=4, max_score_ratio=None, seed=3)
    first, _ = mine(rows, texts, fixed_scorer(scores), settings)
    again, _ = mine(rows, texts, fixed_scorer(scores), settings)
    assert [row.negs for row in first] == [row.negs for row in again]
    assert all(len(row.negs) == 2 and set(row.negs) <= {"t1", "t2", "t3", "t4"} for row in first)
    assert len({tuple(row.negs) for row in first}) > 1  # sampled, not always the top two


def test_rows_left_with_too_few_candidates_are_counted_not_dropped():
    mined, report = mine([MinedRow("q", "a", []), MinedRow("r", "b", [])], ["a", "b"],
                         fixed_scorer([[1.0, 0.99], [0.1, 1.0]]), MiningSettings(sampling="top"))
    assert [row.negs for row in mined] == [[], ["a"]]
    assert (report.short_rows, report.short_examples) == (1, [1])
    assert "1 rows got fewer negatives than asked" in report.summary()


@pytest.mark.parametrize("settings", [MiningSettings(negatives=0), MiningSettings(depth=1, negatives=2),
                                      MiningSettings(sampling="bottom"), MiningSettings(max_score_ratio=-1.0)])
def test_bad_settings_are_refused(settings):
    with pytest.raises(ArrError):
        settings.check()


def test_bm25_mining_writes_triplets_training_reads(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    output = tmp_path / "mined.jsonl"
    report = mine_negatives(str(data), output, settings=MiningSettings(sampling="top", max_score_ratio=None))
    assert (report.rows, report.corpus) == (4, 6)  # 4 positives, 2 negatives that are no row's positive
    mined = [json.loads(line) for line in output.read_text().splitlines()]
    # "revision control for large binary files" shares the most words with Git's description
    assert mined[3]["neg"][0] == ROWS[0]["pos"]
    assert all(row["neg"][0] != row["pos"] for row in mined)
    triplets, _ = load_triplets(str(output), FieldMap(), num_negatives=2)
    assert len(triplets) == 4


def test_skip_and_limit_choose_the_rows_mined_and_every_row_stays_a_candidate(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    output = tmp_path / "mined.jsonl"
    corpus = write_beir_corpus(tmp_path / "corpus", [{"_id": "x", "title": "", "text": "Large binary files in git repositories."}])
    report = mine_negatives(str(data), output, corpus=corpus, skip=3, limit=5,
                            settings=MiningSettings(sampling="top", max_score_ratio=None, keep_negatives=False))
    assert (report.rows, report.corpus) == (1, 7)
    (row,) = [json.loads(line) for line in output.read_text().splitlines()]
    assert row["query"] == ROWS[3]["query"] and row["neg"] == ["Large binary files in git repositories."]


def test_a_model_ranks_the_candidates(tmp_path, registry):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    report = mine_negatives(str(data), tmp_path / "mined.jsonl", retriever="tiny", settings=MiningSettings(negatives=2, depth=3))
    assert (report.retriever, report.mined + report.filtered_by_ratio >= 4) == ("tiny", True)
    for line in (tmp_path / "mined.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["pos"] not in row["neg"]


def test_cli_mines_and_names_the_bad_line(tmp_path):
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    done = runner.invoke(app, ["mine-negatives", str(data), str(tmp_path / "out.jsonl"), "--sampling", "top", "--max-score-ratio", "0"])
    assert done.exit_code == 0, done.output
    assert "4 negatives mined with bm25 for 4 rows" in done.output
    bad = write_rows(tmp_path / "bad.jsonl", [ROWS[0], {"query": "no positive"}])
    failed = runner.invoke(app, ["mine-negatives", str(bad), str(tmp_path / "out2.jsonl")])
    assert isinstance(failed.exception, ArrError) and "bad.jsonl:2: missing field 'pos'" in str(failed.exception)
    assert not (tmp_path / "out2.jsonl").exists()
