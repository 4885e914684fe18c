"""Hostile flags and input files: out-of-range values, flags the model cannot serve, binary text.
Each is one `bertkit <command>: error:` line naming the flag or file, exit 2, no traceback, and
nothing written; every flag is checked against the model before any work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.cli.main import main
from helpers import FIXTURES, MRPC_SAMPLE, TINY_TF, TINY_TF_FLAGS, cli_error, tree

SAMPLE, TF, MODEL = MRPC_SAMPLE, TINY_TF, TINY_TF_FLAGS
CLASSIFIER = ["run_classifier", "--task_name=MRPC", f"--data_dir={SAMPLE}", "--do_train", "--do_eval",
              "--max_steps=1", "--max_seq_length=32", "--cache_dir=none", "--no_progress", *MODEL]
EXTRACT = ["extract_features", "--input_file={text}", "--output_file={tmp}/features.jsonl", *MODEL]

CASES = {  # argv (templates over the ws paths), what the message must name
    "max-seq-length-0": ([*CLASSIFIER, "--max_seq_length=0"], "argument --max_seq_length: must be at least 3"),
    "max-seq-length-2": ([*CLASSIFIER, "--max_seq_length=2"], "argument --max_seq_length: must be at least 3"),
    "max-seq-length-beyond-the-model": ([*CLASSIFIER, "--max_seq_length=100"],
                                        "--max_seq_length=100 is more than the model's max_position_embeddings=64"),
    "max-seq-length-beyond-the-model-ner": (["run_ner", f"--data_dir={FIXTURES / 'ner'}", "--do_train", "--do_eval",
                                             "--max_seq_length=100", *MODEL], "--max_seq_length=100 is more than"),
    "max-seq-length-beyond-the-model-squad": (["run_squad", f"--train_file={FIXTURES / 'squad' / 'tiny-v1.1.json'}",
                                               "--do_train", "--max_seq_length=100", "--max_query_length=16", *MODEL],
                                              "--max_seq_length=100 is more than"),
    "max-position-embeddings-below-max-seq-length": ([*CLASSIFIER, "--max_position_embeddings=16"],
                                                     "--max_position_embeddings=16 is less than --max_seq_length=32"),
    "negative-seed": ([*CLASSIFIER, "--seed=-1"], "argument --seed: must be between 0 and"),
    "negative-warmup": ([*CLASSIFIER, "--warmup_proportion=-0.5"], "argument --warmup_proportion: must be between 0"),
    "warmup-above-1": ([*CLASSIFIER, "--warmup_proportion=1.5"], "argument --warmup_proportion: must be between 0"),
    "zero-batch-size": ([*CLASSIFIER, "--train_batch_size=0"], "argument --train_batch_size: must be at least 1"),
    "negative-max-eval-examples": ([*CLASSIFIER, "--max_eval_examples=-3"],
                                   "argument --max_eval_examples: must be at least 1"),
    "encode-max-seq-length-beyond-the-model": (["encode", "hi", "--max_seq_length=100", *MODEL],
                                               "--max_seq_length=100 is more than the model's"),
    "prune-max-seq-length-beyond-the-model": (["prune", f"--model={TF / 'bert_model.ckpt'}", "--method=magnitude",
                                               f"--vocab_file={TF / 'vocab.txt'}", "--heads=0.5",
                                               "--max_seq_length=100", "--output_dir={tmp}/out"],
                                              "--max_seq_length=100 is more than the model's"),
    "extract-missing-layer": ([*EXTRACT, "--layers=-99"], "--layers: layer -99 does not exist, the model has 2 layers"),
    "extract-zero-batch-size": ([*EXTRACT, "--batch_size=0"], "argument --batch_size: must be at least 1"),
    "extract-max-seq-length-beyond-the-model": ([*EXTRACT, "--max_seq_length=100"], "--max_seq_length=100 is more"),
    "extract-non-utf8-input": ([*EXTRACT, "--input_file={latin1}"], "{latin1}:2: not UTF-8 text"),
    "build-vocab-binary-corpus": (["build_vocab", "--input_file={binary}", "--output_file={tmp}/vocab.txt"],
                                  "{binary}:1: "),
    "build-vocab-non-utf8-corpus": (["build_vocab", "--input_file={latin1}", "--output_file={tmp}/vocab.txt"],
                                    "{latin1}:2: not UTF-8 text"),
    "pretraining-data-binary-corpus": (["create_pretraining_data", "--input_file={binary}", "--output_dir={tmp}/shards",
                                        f"--vocab_file={TF / 'vocab.txt'}"], "{binary}:1: "),
    # Already one line before these checks; kept so.
    "unknown-task-name": ([*CLASSIFIER, "--task_name=NOPE"], "NOPE"),
}


@pytest.fixture
def ws(tmp_path) -> dict[str, Path]:
    (tmp_path / "text").write_text("hello world\nthe cat sat ||| on the mat\n")
    (tmp_path / "latin1").write_bytes("plain\ncaf\u00e9\n".encode("latin-1"))
    (tmp_path / "binary").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)))
    return {"tmp": tmp_path, **{p.name: p for p in tmp_path.iterdir()}}


@pytest.mark.parametrize("case", CASES)
def test_bad_flags_and_files(ws, capsys, case):
    argv, culprit = CASES[case]
    if argv[0].startswith("run_"):
        argv = [*argv, "--output_dir={tmp}/out"]
    before = tree(ws["tmp"])
    line = cli_error(capsys, ["-q", *(arg.format(**ws) for arg in argv)])
    assert culprit.format(**ws) in line
    assert tree(ws["tmp"]) == before  # checked before any work: no output dir, file or cache


def test_defaults_fit_a_small_model(ws, capsys):
    """A 64-position, 2-layer model: encode's and similarity's default --max_seq_length (128, 256)
    is capped at 64 and a longer text truncated; extract_features' default --layers (Google's top
    four) are its two."""
    assert main(["-q", "encode", " ".join(["the"] * 200), *MODEL]) == 0
    assert "tokens (64):" in capsys.readouterr().out
    assert main(["-q", "similarity", " ".join(["the"] * 300), "the", *MODEL]) == 0
    assert main(["-q", *(arg.format(**ws) for arg in EXTRACT)]) == 0
    record = json.loads((ws["tmp"] / "features.jsonl").read_text().splitlines()[0])
    assert [layer["index"] for layer in record["features"][0]["layers"]] == [-1, -2]


@pytest.mark.parametrize("flag", ["--output_dir={file}", "--seed=-1"], ids=["path", "flag"])
def test_the_real_process_prints_one_line(ws, flag):
    argv = ["run_classifier", "--task_name=MRPC", f"--data_dir={SAMPLE}", "--do_train", "--output_dir={tmp}/out",
            flag]
    result = subprocess.run([sys.executable, "-m", "bertkit", *(arg.format(file=ws["text"], **ws) for arg in argv)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("bertkit run_classifier: error: ")
    assert flag.split("=")[0] in result.stderr
