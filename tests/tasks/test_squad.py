"""run_squad end to end: a tiny from-scratch model on the SQuAD fixtures, output files, and errors."""

import json
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.data.squad import squad_evaluate
from helpers import google_tiny_config, read_eval_results

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "squad"
TINY_V1 = FIXTURES / "tiny-v1.1.json"
TINY_V2 = FIXTURES / "tiny-v2.0.json"
VOCAB = FIXTURES / "vocab.txt"
# Small windows, so that the 328-character "Rivers" paragraph is cut into several doc-stride windows.
WINDOWS = ["--max_seq_length=32", "--doc_stride=8", "--max_query_length=12"]



def _question_ids(articles: list) -> list[str]:
    return [qa["id"] for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(google_tiny_config(vocab_size=128)))
    return path


def _check_nbest(nbest: dict, ids: list[str], n_best_size: int) -> None:
    assert list(nbest) == ids
    for entries in nbest.values():
        assert 1 <= len(entries) <= n_best_size
        assert all(set(e) == {"text", "probability", "start_logit", "end_logit"} for e in entries)
        probabilities = [e["probability"] for e in entries]
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1.0)


def test_split_articles_train_predict_and_score(tmp_path, tiny_config):
    """Train on article 0 of the fixture, predict on article 1, score with the official metric."""
    out = tmp_path / "split"
    assert main(["-q", "run_squad", f"--train_file={TINY_V1}", "--split_articles=1", "--do_train=true",
                 "--do_predict=true", *WINDOWS, "--n_best_size=5", "--max_answer_length=10",
                 f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}", "--train_batch_size=4",
                 "--max_steps=3", f"--output_dir={out}", "--no_progress"]) == 0
    articles = json.loads(TINY_V1.read_text())["data"]
    ids = _question_ids(articles[1:])
    predictions = json.loads((out / "predictions.json").read_text())
    assert list(predictions) == ids == ["riv-1", "riv-2", "riv-3"]
    assert all(isinstance(text, str) and text for text in predictions.values())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    _check_nbest(nbest, ids, 5)
    assert all(nbest[i][0]["text"] == predictions[i] for i in ids)
    assert not (out / "null_odds.json").exists()
    # The held-out articles, to score predictions.json with the official evaluate-v1.1.py.
    held_out = json.loads((out / "eval_articles.json").read_text())
    assert held_out["data"] == articles[1:] and held_out["version"] == "1.1"
    results = read_eval_results(out / "eval_results.txt")
    assert results["global_step"] == "3" and results["num_questions"] == "3"
    expected = squad_evaluate(held_out, predictions)
    assert float(results["exact_match"]) == pytest.approx(expected["exact_match"])
    assert float(results["f1"]) == pytest.approx(expected["f1"]) and 0.0 <= float(results["f1"]) <= 100.0
    assert (out / "model.safetensors").is_file() and (out / "vocab.txt").is_file()

    # Predict only, from the trained output, on a file without gold answers: predictions, no scores.
    unanswered = json.loads(TINY_V1.read_text())
    for article in unanswered["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                del qa["answers"]
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps(unanswered))
    again = tmp_path / "predict_only"
    assert main(["-q", "run_squad", f"--predict_file={test_file}", "--do_predict", *WINDOWS,
                 f"--init_checkpoint={out}", f"--output_dir={again}", "--no_progress"]) == 0
    assert list(json.loads((again / "predictions.json").read_text())) == _question_ids(articles)
    assert (again / "nbest_predictions.json").is_file() and not (again / "eval_results.txt").exists()


def test_squad_v2_train_and_predict_files(tmp_path, tiny_config):
    out = tmp_path / "v2"
    assert main(["-q", "run_squad", f"--train_file={TINY_V2}", f"--predict_file={TINY_V2}", "--do_train",
                 "--do_predict", "--version_2_with_negative=true", "--null_score_diff_threshold=0.5", *WINDOWS,
                 f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}", "--train_batch_size=2",
                 "--max_steps=3", f"--output_dir={out}", "--no_progress"]) == 0
    ids = ["moon-1", "moon-2", "moon-3"]
    predictions = json.loads((out / "predictions.json").read_text())
    null_odds = json.loads((out / "null_odds.json").read_text())
    assert list(predictions) == list(null_odds) == ids
    # The empty answer is predicted exactly where the null score wins by more than the threshold.
    assert all((predictions[i] == "") == (null_odds[i] > 0.5) for i in ids)
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    _check_nbest(nbest, ids, 20 + 1)  # as in Google's script, "" joins a full n-best list
    assert all(any(e["text"] == "" for e in entries) for entries in nbest.values())
    results = read_eval_results(out / "eval_results.txt")
    assert set(results) == {"exact_match", "f1", "num_questions", "global_step"}
    assert not (out / "eval_articles.json").exists()


@pytest.mark.parametrize("extra, message", [
    ([f"--train_file={TINY_V1}"], "at least one of --do_train or --do_predict must be true"),
    (["--do_predict"], "--do_predict needs --predict_file (or --split_articles=N with --train_file)"),
    (["--do_train"], "--do_train needs --train_file"),
    (["--do_train", "--split_articles=1", f"--predict_file={TINY_V1}"], "--split_articles=N needs --train_file"),
    (["--do_train", "--split_articles=1", f"--train_file={TINY_V1}", f"--predict_file={TINY_V2}"],
     "leave --predict_file out"),
    (["--do_train", "--split_articles=2", f"--train_file={TINY_V1}"],
     "has 2 articles, so n_train must be between 1 and 1, got 2"),
    (["--do_train", "--train_file=/no/such.json"], "/no/such.json: file not found"),
    (["--do_train", "--train_file=BROKEN"], "broken.json:2:"),
    (["--do_train", f"--train_file={TINY_V2}"], "set version_2_with_negative"),
    (["--do_predict", f"--predict_file={TINY_V1}", "--max_seq_length=40", "--max_query_length=64"],
     "--max_seq_length=40 leaves no room"),
])
def test_user_errors_are_one_line(tmp_path, tiny_config, capsys, extra, message):
    broken = tmp_path / "broken.json"
    broken.write_text('{"data":\n  [oops]}\n')
    argv = ["run_squad", f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}",
            f"--output_dir={tmp_path / 'out'}", "--no_progress", "--max_seq_length=128"]  # the tiny model's positions
    assert main(argv + [e.replace("BROKEN", str(broken)) for e in extra]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("bertkit run_squad: error: ") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
