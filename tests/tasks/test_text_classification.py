"""run_classifier on your own files: CSV single-label, JSONL multi-label, regression, and the user's mistakes."""

import json

import httpx
import numpy as np
import pytest

from bertkit.cli.main import main
from bertkit.serve.app import ServeSettings, create_app
from bertkit.inference.pipeline import pipeline
from bertkit.tasks.text_classification import classification_metrics
from helpers import REPO, TINY_VOCAB, cli_error, google_tiny_config, read_eval_results
from serve.serving import running

REVIEWS = REPO / "examples" / "data" / "reviews"
TICKETS = REPO / "examples" / "data" / "support_tickets"


def scratch_flags(tmp_path):
    """A tiny model trained from scratch on the fixtures' 99-token vocab: seconds on a CPU."""
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config()))
    return [f"--bert_config_file={config}", f"--vocab_file={TINY_VOCAB}", "--max_seq_length=32", "--no_progress",
            "--cache_dir=none"]


def test_csv_train_eval_predict_writes_what_users_expect(tmp_path):
    out = tmp_path / "out"
    test = tmp_path / "test.csv"
    test.write_text("text\nIt broke on day one.\nWorks great!\n", encoding="utf-8")
    assert main(["-q", "run_classifier", f"--train_file={REVIEWS / 'train.csv'}",
                 f"--validation_file={REVIEWS / 'dev.csv'}", f"--test_file={test}", "--do_train", "--do_eval",
                 "--do_predict", "--num_train_epochs=2", "--train_batch_size=8", f"--output_dir={out}",
                 *scratch_flags(tmp_path)]) == 0
    results = read_eval_results(out / "eval_results.txt")
    assert {"eval_accuracy", "eval_macro_f1", "eval_f1_negative", "eval_precision_neutral", "eval_recall_positive",
            "eval_support_positive", "global_step"} <= set(results)
    assert sum(int(results[f"eval_support_{n}"]) for n in ("negative", "neutral", "positive")) == 9
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}
    assert config["problem_type"] == "single_label_classification"
    assert config["finetuning_task"] == "text-classification"
    dev = [json.loads(line) for line in (out / "eval_predictions.jsonl").read_text().splitlines()]
    assert len(dev) == 9 and dev[0]["line"] == 2 and dev[0]["label"] == "positive"
    assert dev[0]["prediction"] in config["label2id"] and 0 < dev[0]["score"] <= 1
    test_rows = [json.loads(line) for line in (out / "test_predictions.jsonl").read_text().splitlines()]
    assert [r["text"] for r in test_rows] == ["It broke on day one.", "Works great!"] and "label" not in test_rows[0]
    # The saved model predicts as the run did.
    p = pipeline(out)
    answer = p("Works great!", top_k=None)
    assert answer[0]["label"] == test_rows[1]["prediction"]
    assert abs(answer[0]["score"] - test_rows[1]["score"]) < 1e-5


def test_validation_split_and_eval_only_with_the_models_labels(tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "run_classifier", f"--train_file={REVIEWS / 'train.csv'}", "--validation_split_percentage=20",
                 "--do_train", "--do_eval", "--max_steps=2", f"--output_dir={out}", *scratch_flags(tmp_path)]) == 0
    assert len((out / "eval_predictions.jsonl").read_text().splitlines()) == 7
    again = tmp_path / "again"
    assert main(["-q", "run_classifier", f"--validation_file={REVIEWS / 'dev.csv'}", "--do_eval",
                 f"--init_checkpoint={out}", f"--output_dir={again}", "--no_progress", "--cache_dir=none"]) == 0
    assert read_eval_results(again / "eval_results.txt")["global_step"] == "0"


def test_multi_label_jsonl_and_transformers_reads_the_saved_model(tmp_path, capsys, transformers_module):
    out = tmp_path / "out"
    assert main(["-q", "run_classifier", f"--train_file={TICKETS / 'train.jsonl'}",
                 f"--validation_file={TICKETS / 'dev.jsonl'}", "--problem_type=multi_label_classification",
                 "--do_train", "--do_eval", "--num_train_epochs=3", "--train_batch_size=4", "--learning_rate=1e-3",
                 f"--output_dir={out}", *scratch_flags(tmp_path)]) == 0
    results = read_eval_results(out / "eval_results.txt")
    assert {"eval_micro_f1", "eval_macro_f1", "eval_exact_match", "eval_f1_refund"} <= set(results)
    assert json.loads((out / "config.json").read_text())["problem_type"] == "multi_label_classification"
    texts = ["I was charged twice, please refund me.", "The app crashes on start."]
    ours = pipeline(out)(texts)
    assert all(len(answer) == 5 for answer in ours)  # every label, each with its own sigmoid score
    assert sum(a["score"] for a in ours[0]) != pytest.approx(1.0)
    capsys.readouterr()
    assert main(["-q", "predict", "--model", str(out), texts[0]]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [a["label"] for a in printed] == [a["label"] for a in ours[0]]  # `bertkit predict`: every label too
    with running(create_app({"tags": lambda: pipeline(out)}, ServeSettings())) as url:  # and `bertkit serve`
        served = httpx.post(f"{url}/predict", json={"inputs": texts[0]}).json()["outputs"]
    assert [a["label"] for a in served] == [a["label"] for a in ours[0]]
    np.testing.assert_allclose([a["score"] for a in served], [a["score"] for a in ours[0]], atol=1e-6)
    theirs = transformers_module.pipeline("text-classification", model=str(out), top_k=None, device="cpu")(texts)
    for mine, reference in zip(ours, theirs):
        assert [a["label"] for a in mine] == [a["label"] for a in reference]
        np.testing.assert_allclose([a["score"] for a in mine], [a["score"] for a in reference], atol=1e-4)


def test_regression_from_float_labels(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"review number {i}", "label": i / 4}) + "\n" for i in range(12)))
    out = tmp_path / "out"
    assert main(["-q", "run_classifier", f"--train_file={train}", f"--validation_file={train}", "--do_train",
                 "--do_eval", "--max_steps=2", f"--output_dir={out}", *scratch_flags(tmp_path)]) == 0
    assert {"eval_pearson", "eval_mse"} <= set(read_eval_results(out / "eval_results.txt"))
    assert json.loads((out / "config.json").read_text())["num_labels"] == 1


def test_training_data_unknown_share_is_logged_at_the_start(tmp_path, caplog):
    train = tmp_path / "train.csv"
    train.write_text("text,label\n今天天气很好。,1\n这个宾馆比较陈旧了。,0\n", encoding="utf-8")
    with caplog.at_level("INFO", logger="bertkit"):
        assert main(["-q", "run_classifier", f"--train_file={train}", "--do_train", "--max_steps=1",
                     f"--output_dir={tmp_path / 'out'}", *scratch_flags(tmp_path)]) == 0
    warning = next(r for r in caplog.records if "[UNK]" in r.getMessage())
    assert warning.levelname == "WARNING" and "100% of the words in the training data" in warning.getMessage()
    assert str(train) in warning.getMessage() and "vocab.txt" in warning.getMessage()


def test_metrics():
    logits = np.array([[2.0, -1.0, 0.5], [-1.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    single = classification_metrics("single_label_classification", logits, np.array([0, 1, 1]))
    assert single["accuracy"] == pytest.approx(2 / 3)
    multi = classification_metrics("multi_label_classification", logits, np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]]))
    assert multi["exact_match"] == pytest.approx(2 / 3) and multi["micro_f1"] == pytest.approx(6 / 7)  # TP 3, FP 1, FN 0


@pytest.mark.parametrize("extra, message", [
    (["--task_name=MRPC", "--train_file=x.csv"], "not both"),
    (["--train_file=REVIEWS/train.csv", "--do_eval"], "--do_eval needs --validation_file"),
    ([], "give --train_file"),
    (["--train_file=REVIEWS/train.csv", "--validation_file=REVIEWS/dev.csv", "--text_column=body"],
     "no column 'body' (--text_column); the columns found are: text, label"),
    (["--train_file=REVIEWS/train.csv", "--validation_file=REVIEWS/dev.csv", "--validation_split_percentage=10"],
     "cannot be combined with --validation_file"),
])
def test_flag_mistakes_are_one_line(tmp_path, capsys, extra, message):
    extra = [e.replace("REVIEWS", str(REVIEWS)) for e in extra]
    line = cli_error(capsys, ["run_classifier", "--do_train", f"--output_dir={tmp_path / 'o'}", *extra,
                              *scratch_flags(tmp_path)])
    assert message in line
