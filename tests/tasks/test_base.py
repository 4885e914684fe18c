"""run_task and the Task interface: one sequence for every runner, flags checked before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkit.cli.common import print_results
from bertkit.cli.main import main
from bertkit.errors import ConfigError
from bertkit.tasks.base import Task, record_task
from bertkit.tasks.classifier import ClassifierTask
from bertkit.tasks.multiple_choice import MultipleChoiceTask
from bertkit.tasks.ner import NerTask
from bertkit.tasks.pretraining import PretrainingTask
from bertkit.tasks.squad import SquadTask
from bertkit.tokenization import FullTokenizer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
TF_CLASSIFIER = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_classifier"
COMMON = ["-q", "run_classifier", "--task_name=MRPC", f"--data_dir={SAMPLE}",
          f"--init_checkpoint={TF_CLASSIFIER / 'bert_model.ckpt'}", f"--vocab_file={TF_CLASSIFIER / 'vocab.txt'}",
          f"--bert_config_file={TF_CLASSIFIER / 'bert_config.json'}", "--cache_dir=none", "--no_progress"]


@pytest.mark.parametrize("task_class, args, step", [
    (ClassifierTask, ("MRPC", "d"), {"do_eval": True}), (MultipleChoiceTask, ("swag", "d"), {"do_eval": True}),
    (NerTask, ("d",), {"do_eval": True}), (SquadTask, (), {"do_predict": True, "predict_file": "dev.json"}),
    (PretrainingTask, (), {"do_eval": True, "input_file": "shards"})])
def test_every_task_is_checked_when_made_and_asks_for_a_step(task_class, args, step):
    with pytest.raises(ConfigError, match="at least one of --do_train"):
        task_class(*args)
    task = task_class(*args, **step)
    assert isinstance(task, Task) and task.model_class.__name__.startswith("BertFor")


def test_flags_are_checked_against_the_model_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*COMMON, "--do_train", "--max_seq_length=1000", f"--output_dir={out}"]) == 2
    assert "--max_seq_length=1000 is more than the model's max_position_embeddings=" in capsys.readouterr().err
    assert not out.exists()  # nothing was written


def test_max_eval_examples_and_the_saved_task(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*COMMON, "--do_train", "--do_eval", "--do_predict", "--max_steps=2", "--max_seq_length=32",
                 "--max_eval_examples=7", f"--output_dir={out}"]) == 0
    printed = dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())
    assert {"eval_accuracy", "global_step", "train_loss"} <= set(printed) and printed["global_step"] == "2"
    assert len((out / "test_results.tsv").read_text().splitlines()) == 7
    config = json.loads((out / "config.json").read_text())
    assert config["finetuning_task"] == "mrpc" and config["max_seq_length"] == 32


def test_record_task_names_unnamed_labels_as_transformers_does(tmp_path):
    from bertkit.config import BertConfig

    config = BertConfig(num_labels=1)
    record_task(config, "sts-b", 64, FullTokenizer(TF_CLASSIFIER / "vocab.txt", do_lower_case=False))
    assert config.id2label == {0: "LABEL_0"} and config.label2id == {"LABEL_0": 0}
    assert config.task_metadata.do_lower_case is False and config.task_metadata.finetuning_task == "sts-b"
    assert "finetuning_task" not in config.extra and config.to_dict()["max_seq_length"] == 64


def test_results_are_printed_on_the_main_process_only(monkeypatch, capsys):
    print_results({"b": 2, "a": 1})
    assert capsys.readouterr().out == "a = 1\nb = 2\n"
    monkeypatch.setenv("RANK", "1")
    print_results({"a": 1})
    assert capsys.readouterr().out == ""


def test_a_task_is_validated_once_on_the_command_line(tmp_path, monkeypatch):
    calls = []
    validate = ClassifierTask.validate
    monkeypatch.setattr(ClassifierTask, "validate", lambda self: calls.append(1) or validate(self))
    assert main([*COMMON, "--do_eval", "--max_seq_length=32", "--max_eval_examples=2",
                 f"--output_dir={tmp_path / 'out'}"]) == 0
    assert len(calls) == 1
