"""The CLI is thin: these tests check wiring, output and the one-line errors."""

import argparse
import importlib.metadata
import json
import logging
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bertkit.cli.common import training_arguments
from bertkit.cli.main import COMMANDS, build_parser, main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tf"
PYPROJECT_VERSION = tomllib.loads((FIXTURES.parents[2] / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("installed", [True, False], ids=["installed", "source-tree"])
def test_version(capsys, monkeypatch, installed):
    if not installed:
        def not_installed(name):
            raise importlib.metadata.PackageNotFoundError(name)
        monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"bertkit {PYPROJECT_VERSION}\n"


def test_help_shows_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapped help lines
    with pytest.raises(SystemExit):
        main(["run_classifier", "--help"])
    lines, flag = {}, None
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  --"):
            flag = line.split()[0]
            lines[flag] = line
        elif flag and line.startswith("      "):  # the help under a long flag
            lines[flag] += " " + line.strip()
    assert lines["--max_seq_length"].endswith("default: 128")
    assert lines["--iterations_per_loop"].endswith("accepted for compatibility; unused (default: 1000)")
    # A help that already explains its default is left alone; a flag without a default gets none.
    assert lines["--group_by_length"].endswith("batch examples of similar length together (default true)")
    assert "default" not in lines["--output_dir"]


def test_logging_steps_reaches_the_trainer():
    argv = ["run_classifier", "--task_name=MRPC", "--data_dir=d", "--output_dir=o"]
    assert training_arguments(build_parser("run_classifier").parse_args(argv)).logging_steps is None
    args = build_parser("run_classifier").parse_args([*argv, "--logging_steps=5"])
    assert training_arguments(args).logging_steps == 5


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_with_a_default_shows_it(command):
    sub = next(a for a in build_parser(command)._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    for group in sub._action_groups:
        for action in group._group_actions:
            if action.option_strings and action.default not in (None, argparse.SUPPRESS):
                formatter = sub._get_formatter()
                formatter.add_argument(action)
                assert "default" in formatter.format_help(), action.option_strings


def test_encode_prints_report_tokens_and_vectors(capsys, minilm_path):
    assert main(["-q", "encode", "The cat sat.", "A cat was sitting.", "--dims", "3"]) == 0
    out = capsys.readouterr().out
    assert "loaded          103" in out and "[CLS] the cat sat . [SEP] a cat was sitting . [SEP]" in out
    assert "cosine(mean A, mean B)" in out


def test_inspect_json(capsys):
    assert main(["inspect", str(FIXTURES / "bert_tiny_classifier"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_parameters"] == 23_554
    assert {v["name"] for v in data["variables"]} >= {"output_weights", "bert/pooler/dense/kernel"}


def test_convert_google_checkpoint_loads_in_transformers(tmp_path, transformers_module, capsys):
    assert main(["-q", "convert", str(FIXTURES / "bert_tiny_pretraining" / "bert_model.ckpt"), str(tmp_path)]) == 0
    assert "wrote BertForPreTraining" in capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors", "vocab.txt"}
    model, info = transformers_module.BertForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_convert_bin_to_safetensors(tmp_path, shared_data):
    source = shared_data / "checkpoints" / "camphr-tiny-bert-ja-v1"
    assert main(["-q", "convert", str(source), str(tmp_path)]) == 0
    tensors = load_file(tmp_path / "model.safetensors")
    assert "encoder.layer.0.attention.self.query.weight" in tensors
    assert (tmp_path / "vocab.txt").read_bytes() == (source / "vocab.txt").read_bytes()


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING], ids=["logged", "quiet"])
@pytest.mark.parametrize("command", ["encode", "convert", "similarity"])
def test_the_load_report_is_shown_once(tmp_path, capsys, caplog, command, level):
    """from_pretrained logs the report; encode and convert print it only when that log is off (-q)."""
    caplog.set_level(level)
    checkpoint = str(FIXTURES / "bert_tiny_pretraining" / "bert_model.ckpt")
    argv = {"encode": ["encode", "hi", "--model", checkpoint], "convert": ["convert", checkpoint, str(tmp_path)],
            "similarity": ["similarity", "hi", "there", "--model", checkpoint]}[command]
    assert main(argv) == 0
    shown = capsys.readouterr().out + caplog.text
    # similarity's output is the scores: its report is in the log only.
    assert shown.count("  mismatched ") == (0 if command == "similarity" and level == logging.WARNING else 1)


@pytest.mark.parametrize("argv, message", [
    (["inspect", "/no/such/checkpoint"], "checkpoint not found: /no/such/checkpoint"),
    (["encode", "hi", "--model", "/no/such/dir"], "checkpoint not found"),
])
def test_user_errors_are_one_line_without_traceback(argv, message):
    result = subprocess.run([sys.executable, "-m", "bertkit", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_seed_decides_the_initialisation(tmp_path, minilm_path):
    """--seed must reach the new head (and a from-scratch model), not only the data order and
    dropout: before this, every seed fine-tuned from the same classifier init."""
    import torch

    from bertkit.cli.common import ModelSource, load_training_model
    from bertkit.cli.main import build_parser
    from bertkit.heads import BertForMultipleChoice
    from helpers import google_tiny_config

    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config()))

    def weights(seed: int, *source: str) -> dict[str, torch.Tensor]:
        args = build_parser("run_multiple_choice").parse_args(
            ["run_multiple_choice", "--task=commonsenseqa", f"--data_dir={tmp_path}", f"--output_dir={tmp_path}",
             f"--seed={seed}", *source])
        return dict(load_training_model(args, ModelSource.from_args(args), BertForMultipleChoice).state_dict())

    for source, name in (([f"--init_checkpoint={minilm_path}"], "classifier.weight"),
                         ([f"--bert_config_file={config}"], "bert.encoder.layer.0.attention.self.query.weight")):
        first, again, other = weights(1, *source), weights(1, *source), weights(2, *source)
        assert torch.equal(first[name], again[name]), f"{source}: the same seed gave a different {name}"
        assert not torch.equal(first[name], other[name]), f"{source}: seeds 1 and 2 gave the same {name}"
    query = "bert.encoder.layer.0.attention.self.query.weight"
    loaded = [weights(seed, f"--init_checkpoint={minilm_path}")[query] for seed in (1, 2)]
    assert torch.equal(*loaded), "weights loaded from a checkpoint must not depend on the seed"


@pytest.mark.parametrize("flags, shown", [([], False), (["-v"], True)], ids=["default", "verbose"])
def test_the_first_examples_token_ids_only_with_v(tmp_path, caplog, flags, shown):
    caplog.set_level(logging.INFO)  # the log as a terminal gets it; the capture itself takes everything
    caplog.handler.setLevel(logging.DEBUG)
    tiny = FIXTURES / "bert_tiny_classifier"
    argv = ["run_classifier", "--task_name=MRPC", "--do_train", f"--data_dir={FIXTURES.parents[2] / 'examples/data/mrpc_sample'}",
            f"--init_checkpoint={tiny / 'bert_model.ckpt'}", f"--vocab_file={tiny / 'vocab.txt'}",
            f"--bert_config_file={tiny / 'bert_config.json'}", "--max_seq_length=32", "--max_steps=1",
            f"--output_dir={tmp_path}", "--cache_dir=none", "--no_progress", *flags]
    assert main(argv) == 0
    assert ("input_ids: " in caplog.text) == shown
    assert "***** Running training *****" in caplog.text  # the progress log stays either way
    assert logging.getLogger("bertkit").level == logging.NOTSET  # -v does not outlive the command


def test_log_lines_go_above_a_progress_bar(capsys):
    from tqdm import tqdm

    from bertkit.cli.main import _TqdmAwareHandler

    logger = logging.getLogger("bertkit.test_progress")
    handler = _TqdmAwareHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        with tqdm(total=2, file=sys.stderr, ascii=True) as bar:
            bar.update(1)
            logger.warning("a log line")
            bar.update(1)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "a log line\n" in err and "|a log line" not in err and "it/s]a log line" not in err
