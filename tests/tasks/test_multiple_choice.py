"""run_multiple_choice end to end: a tiny from-scratch model on the fixtures, outputs, and errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit.cli.main import main
from bertkit.tasks.multiple_choice import MultipleChoiceTask
from helpers import TINY_VOCAB as VOCAB, google_tiny_config, read_eval_results

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "multiple_choice"



def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(google_tiny_config()))
    return path


@pytest.mark.parametrize("task, labels, num_choices", [("commonsenseqa", "ABCDE", 5), ("swag", "0123", 4)])
def test_train_eval_predict_from_scratch(tmp_path, tiny_config, task, labels, num_choices):
    out = tmp_path / "out"
    argv = ["-q", "run_multiple_choice", f"--task={task}", f"--data_dir={FIXTURES / task}", "--do_train",
            "--do_eval=true", "--do_predict=true", f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}",
            "--max_seq_length=32", "--train_batch_size=2", "--max_steps=3", f"--output_dir={out}", "--no_progress"]
    assert main(argv) == 0
    results = read_eval_results(out / "eval_results.txt")
    assert results["global_step"] == "3" and 0.0 <= float(results["eval_accuracy"]) <= 1.0
    assert {"eval_loss", "loss"} <= set(results)
    assert (out / "model.safetensors").is_file() and (out / "vocab.txt").is_file()
    dev = _jsonl(out / "eval_predictions.jsonl")
    assert len(dev) == 3 and all(r["prediction"] in labels and r["label"] in labels for r in dev)
    assert all(len(r["probabilities"]) == num_choices and abs(sum(r["probabilities"]) - 1) < 1e-4 for r in dev)
    # The file's accuracy is the reported one: the predictions come from the final evaluation.
    assert np.mean([r["prediction"] == r["label"] for r in dev]) == pytest.approx(float(results["eval_accuracy"]))
    test = _jsonl(out / "test_predictions.jsonl")
    assert len(test) == 2 and all("label" not in r and r["prediction"] in labels for r in test)


def test_eval_only_from_the_trained_output_and_max_train_examples(tmp_path, tiny_config):
    common = ["-q", "run_multiple_choice", "--task=swag", f"--data_dir={FIXTURES / 'swag'}", "--max_seq_length=24",
              "--no_progress"]
    assert main([*common, "--do_train", "--max_train_examples=2", "--train_batch_size=2", "--num_train_epochs=1",
                 f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}", f"--output_dir={tmp_path / 'a'}"]) == 0
    state = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    assert state["step"] == 1  # 2 examples, batch 2, one epoch
    assert main([*common, "--do_eval", f"--init_checkpoint={tmp_path / 'a'}", f"--output_dir={tmp_path / 'b'}"]) == 0
    assert read_eval_results(tmp_path / "b" / "eval_results.txt")["global_step"] == "0"
    assert len(_jsonl(tmp_path / "b" / "eval_predictions.jsonl")) == 3


def test_accuracy_metric():
    task = MultipleChoiceTask("swag", "unused", do_eval=True)
    logits = np.array([[0.1, 0.9], [2.0, 1.0], [0.0, 3.0]])
    assert task.metrics(None, logits, np.array([1, 1, 1])) == {"accuracy": pytest.approx(2 / 3)}


@pytest.mark.parametrize("extra, message", [
    (["--task=race"], "--task must be one of: swag, commonsenseqa"),
    (["--task=swag", "--data_dir=/no/such/dir"], "/no/such/dir/train.csv: file not found"),
    (["--task=commonsenseqa", "--data_dir=BAD"], "train_rand_split.jsonl:1: not valid JSON"),
    (["--task=swag", "--do_train=false"], "at least one of --do_train, --do_eval or --do_predict"),
])
def test_user_errors_are_one_line(tmp_path, tiny_config, capsys, extra, message):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_rand_split.jsonl").write_text("{not json\n")
    argv = ["run_multiple_choice", "--do_train=true", f"--data_dir={FIXTURES / 'swag'}",
            f"--bert_config_file={tiny_config}", f"--vocab_file={VOCAB}", f"--output_dir={tmp_path / 'out'}"]
    assert main(argv + [e.replace("BAD", str(bad)) for e in extra]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("bertkit run_multiple_choice: error: ") and message in stderr


def test_a_user_error_from_the_command_line_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bertkit", "run_multiple_choice", "--task=race", "--do_eval",
                             f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "--task must be one of" in result.stderr and "Traceback" not in result.stderr


def test_the_packaged_minilm_is_the_default_checkpoint(tmp_path, minilm_path):
    assert main(["-q", "run_multiple_choice", "--task=commonsenseqa", f"--data_dir={FIXTURES / 'commonsenseqa'}",
                 "--do_eval", "--max_seq_length=32", f"--output_dir={tmp_path}", "--no_progress"]) == 0
    assert read_eval_results(tmp_path / "eval_results.txt")["global_step"] == "0"
    assert [r["id"] for r in _jsonl(tmp_path / "eval_predictions.jsonl")] == [f"fixture-dev{i}" for i in range(3)]
