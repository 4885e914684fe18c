"""bertkit distill and bertkit prune end to end on the tiny Google classifier and the MRPC sample."""

import json
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.heads import BertForSequenceClassification

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
TEACHER = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_classifier"
COMMON = ["--task_name=MRPC", f"--data_dir={SAMPLE}", "--max_seq_length=48", "--cache_dir=none"]


def test_distill_cuts_a_student_and_trains_it(tmp_path, capsys):
    out = tmp_path / "student"
    argv = ["-q", "distill", f"--teacher={TEACHER}", *COMMON, "--student_layers=1", "--do_train", "--do_eval",
            "--max_steps=2", "--train_batch_size=8", "--max_train_examples=32", "--temperature=3", "--alpha=0.7",
            f"--teacher_cache_dir={tmp_path / 'cache'}", f"--output_dir={out}", "--no_progress",
            "--save_checkpoints_steps=100"]
    assert main(argv) == 0
    assert "eval_accuracy = " in capsys.readouterr().out
    record = json.loads((out / "distillation.json").read_text())
    assert record["student_layers"] == [1] and record["student_parameters"] < record["teacher_parameters"]
    student = BertForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 1 and student.config.kept_layers == [1]
    assert len(list((tmp_path / "cache").glob("teacher-logits-*.safetensors"))) == 1


def test_distill_refuses_a_teacher_without_a_trained_head(tmp_path, capsys):
    BertForSequenceClassification.from_pretrained(TEACHER).bert.save_pretrained(tmp_path / "encoder_only")
    (tmp_path / "encoder_only" / "vocab.txt").write_text((TEACHER / "vocab.txt").read_text())
    argv = ["distill", f"--teacher={tmp_path / 'encoder_only'}", *COMMON, "--do_train",
            f"--output_dir={tmp_path / 'out'}"]
    assert main(argv) == 2
    assert "no trained classifier" in capsys.readouterr().err


def test_prune_heads_and_neurons_then_reload(tmp_path, capsys):
    out = tmp_path / "pruned"
    argv = ["-q", "prune", f"--model={TEACHER}", *COMMON, "--heads=0.5", "--neurons=0.5", "--do_eval",
            "--importance_examples=32", f"--output_dir={out}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "heads per layer: [1, 1]" in printed and "after: " in printed
    report = json.loads((out / "prune_report.json").read_text())
    assert report["parameters_after"] < report["parameters_before"]
    assert report["structured"]["method"] == "importance"
    assert set(report["before"]) >= {"unpruned_accuracy"} and "eval_accuracy" in report["after"]
    model = BertForSequenceClassification.from_pretrained(out)
    assert model.load_report.missing == [] and model.num_parameters() == report["parameters_after"]
    assert model.config.layer_num_heads == [1, 1]

    # magnitude pruning needs no data; unstructured sparsity prints its report
    argv = ["-q", "prune", f"--model={out}", "--sparsity=0.5", "--heads=0", f"--output_dir={tmp_path / 'sparse'}"]
    assert main(argv) == 0
    assert "total" in capsys.readouterr().out
    sparse = BertForSequenceClassification.from_pretrained(tmp_path / "sparse")
    weight = sparse.bert.encoder.layer[0].intermediate.dense.weight
    assert 0.3 < float((weight == 0).float().mean()) < 0.7


@pytest.mark.parametrize("argv, message", [
    (["--heads=0"], "nothing to prune"),
    (["--heads=0.5"], "--task_name and --data_dir"),
])
def test_prune_user_errors(tmp_path, capsys, argv, message):
    assert main(["prune", f"--model={TEACHER}", f"--output_dir={tmp_path}", *argv]) == 2
    assert message in capsys.readouterr().err


def test_layerdrop_training_then_depth_report_and_layer_pruning(tmp_path, capsys):
    trained = tmp_path / "layerdrop"
    argv = ["-q", "run_classifier", f"--init_checkpoint={TEACHER}", *COMMON, "--do_train", "--layerdrop=0.5",
            "--max_steps=2", "--train_batch_size=8", "--max_train_examples=16", "--no_progress",
            "--save_checkpoints_steps=100", f"--output_dir={trained}"]
    assert main(argv) == 0
    assert BertForSequenceClassification.from_pretrained(trained).config.layerdrop == 0.5

    out = tmp_path / "cut"
    argv = ["-q", "prune", f"--model={trained}", *COMMON, "--layers=1", "--depth_report", "--do_eval",
            f"--output_dir={out}"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| depth | layers |" in printed and "kept layers: [1]" in printed
    report = json.loads((out / "prune_report.json").read_text())
    assert [row["depth"] for row in report["depths"]] == [2, 1]
    assert report["depths"][1]["layers"] == [1] and "eval_accuracy" in report["depths"][1]
    cut = BertForSequenceClassification.from_pretrained(out)
    assert cut.config.num_hidden_layers == 1 and cut.load_report.missing == []
    # the depth report's one-layer row is the model that was saved
    assert report["after"]["eval_accuracy"] == report["depths"][1]["eval_accuracy"]


def test_distill_into_a_pruned_student(tmp_path, capsys):
    pruned = tmp_path / "pruned"
    assert main(["-q", "prune", f"--model={TEACHER}", "--heads=0.5", "--method=magnitude",
                 f"--output_dir={pruned}"]) == 0
    out = tmp_path / "recovered"
    argv = ["-q", "distill", f"--teacher={TEACHER}", f"--student={pruned}", *COMMON, "--do_train", "--max_steps=2",
            "--train_batch_size=8", "--max_train_examples=16", "--no_progress", "--save_checkpoints_steps=100",
            f"--output_dir={out}"]
    assert main(argv) == 0
    record = json.loads((out / "distillation.json").read_text())
    assert record["student"] == str(pruned) and record["student_parameters"] < record["teacher_parameters"]
    recovered = BertForSequenceClassification.from_pretrained(out)
    assert recovered.config.layer_num_heads == [1, 1] and recovered.load_report.missing == []
    assert main(["distill", f"--teacher={TEACHER}", f"--student={pruned}", f"--student_config={pruned}/config.json",
                 *COMMON, "--do_train", f"--output_dir={tmp_path / 'x'}"]) == 2
    assert "not both" in capsys.readouterr().err
