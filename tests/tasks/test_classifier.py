"""run_classifier end to end: Google's flags, outputs, checkpoints in both formats, and errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.cli.main import main
from helpers import google_tiny_config, read_eval_results

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
TF_CLASSIFIER = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_classifier"



def test_google_flags_from_a_tf_checkpoint(tmp_path):
    """The seed command line, pointed at a Google checkpoint directory."""
    argv = ["-q", "run_classifier", "--task_name=MRPC", "--do_train=true", "--do_eval=true", "--do_predict=true",
            f"--data_dir={SAMPLE}", f"--vocab_file={TF_CLASSIFIER / 'vocab.txt'}",
            f"--bert_config_file={TF_CLASSIFIER / 'bert_config.json'}",
            f"--init_checkpoint={TF_CLASSIFIER / 'bert_model.ckpt'}", "--max_seq_length=64",
            "--train_batch_size=32", "--learning_rate=2e-5", "--num_train_epochs=1.0",
            f"--output_dir={tmp_path}", "--cache_dir=none", "--no_progress"]
    assert main(argv) == 0
    results = read_eval_results(tmp_path / "eval_results.txt")
    assert set(results) >= {"eval_accuracy", "eval_f1", "eval_loss", "global_step", "loss"}
    assert results["global_step"] == "13"
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "vocab.txt").is_file()
    assert (tmp_path / "training_curves.png").stat().st_size > 1000
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "eval" for e in events)
    submission = (tmp_path / "glue_submission" / "MRPC.tsv").read_text().splitlines()
    assert submission[0] == "index\tprediction" and len(submission) == 51
    assert {line.split("\t")[1] for line in submission[1:]} <= {"0", "1"}
    probabilities = [list(map(float, line.split("\t"))) for line in (tmp_path / "test_results.tsv").read_text().splitlines()]
    assert len(probabilities) == 50 and all(abs(sum(p) - 1) < 1e-4 for p in probabilities)


def test_from_scratch_with_bert_config_then_continue_from_hf_output(tmp_path):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config()))
    common = ["-q", "run_classifier", "--task_name=MRPC", f"--data_dir={SAMPLE}",
              f"--vocab_file={TF_CLASSIFIER / 'vocab.txt'}", "--max_seq_length=48", "--cache_dir=none", "--no_progress"]
    assert main([*common, "--do_train=true", f"--bert_config_file={config}", "--max_steps=3",
                 f"--output_dir={tmp_path / 'scratch'}"]) == 0
    assert main([*common, "--do_eval=true", f"--init_checkpoint={tmp_path / 'scratch'}",
                 f"--output_dir={tmp_path / 'again'}"]) == 0
    assert read_eval_results(tmp_path / "again" / "eval_results.txt")["global_step"] == "0"


@pytest.mark.parametrize("extra, message", [
    (["--task_name=NOPE"], "NOPE"),
    (["--task_name=MRPC", "--data_dir=/no/such/dir"], "/no/such/dir/train.tsv: file not found"),
    (["--task_name=MRPC", "--vocab_file=VOCAB_BIG"], "vocab_size=99"),
])
def test_user_errors_are_one_line(tmp_path, extra, message):
    big_vocab = tmp_path / "vocab.txt"
    big_vocab.write_text("\n".join(["[PAD]", "[UNK]", *(f"tok{i}" for i in range(150))]) + "\n")
    argv = [sys.executable, "-m", "bertkit", "run_classifier", "--do_train=true", f"--data_dir={SAMPLE}",
            f"--init_checkpoint={TF_CLASSIFIER}", f"--output_dir={tmp_path / 'out'}", "--cache_dir=none",
            "--max_seq_length=64"]
    argv += [e.replace("VOCAB_BIG", str(big_vocab)) for e in extra]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_real_mrpc_smoke_run_on_the_bert_tiny_config(tmp_path, shared_data):
    """CI's bounded real-data run: BERT-Tiny from scratch on MRPC, 200 steps, uncased vocab."""
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(hidden_size=128, intermediate_size=512, max_position_embeddings=512,
                                                       vocab_size=30522)))
    assert main(["-q", "run_classifier", "--task_name=MRPC", "--do_train=true", "--do_eval=true",
                 f"--data_dir={shared_data / 'glue' / 'MRPC'}",
                 f"--vocab_file={shared_data / 'vocab' / 'bert-base-uncased' / 'vocab.txt'}",
                 f"--bert_config_file={config}", "--max_seq_length=128", "--train_batch_size=32",
                 "--learning_rate=1e-4", "--max_steps=200", f"--output_dir={tmp_path}", "--cache_dir=none",
                 "--no_progress", "--save_checkpoints_steps=100", "--save_total_limit=1"]) == 0
    results = read_eval_results(tmp_path / "eval_results.txt")
    assert results["global_step"] == "200"
    assert 0.5 <= float(results["eval_accuracy"]) <= 1.0 and float(results["eval_loss"]) < 1.0
    assert [p.name for p in tmp_path.glob("checkpoint-*")] == ["checkpoint-200"]
