"""Hostile paths: a directory where an input file belongs, an output path that is a file, lies
under a file or cannot be written. Each is one `bertkit <command>: error:` line naming the path,
exit 2, no traceback, and nothing written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import FIXTURES, MRPC_SAMPLE, TINY_TF, TINY_TF_FLAGS, cli_error, tree

SAMPLE, TF, MODEL = MRPC_SAMPLE, TINY_TF, TINY_TF_FLAGS
QUICK = ["--max_seq_length=32", "--cache_dir=none", "--no_progress", "--max_steps=1"]


@pytest.fixture
def ws(tmp_path) -> dict[str, Path]:
    """The paths the cases name: a plain `file`, an empty `dir`, a GLUE folder whose dev.tsv is a
    directory, a CoNLL folder whose eng.train is one, a GLUE train.tsv with a short line."""
    (tmp_path / "file").write_text("keep\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "text").write_text("hello world\n")
    glue = tmp_path / "glue"
    glue.mkdir()
    shutil.copy(SAMPLE / "train.tsv", glue)
    (glue / "dev.tsv").mkdir()
    ner = tmp_path / "ner"
    ner.mkdir()
    (ner / "eng.train").mkdir()
    bad = tmp_path / "bad_glue"
    bad.mkdir()
    (bad / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\tonly two columns\n")
    bad_test = tmp_path / "bad_test"
    bad_test.mkdir()
    shutil.copy(SAMPLE / "train.tsv", bad_test)
    (bad_test / "test.tsv").write_text("index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\tonly two columns\n")
    return {"tmp": tmp_path, "out": tmp_path / "out", **{p.name: p for p in tmp_path.iterdir()}}


INPUTS = {  # argv, what the message must name (templates over the ws paths)
    "glue-dev-is-a-dir": (["run_classifier", "--task_name=MRPC", "--data_dir={glue}", "--do_eval", *QUICK],
                          "{glue}/dev.tsv: is a directory"),
    "squad-predict-file-is-a-dir": (["run_squad", "--predict_file={dir}", "--do_predict", "--max_seq_length=64",
                                     "--max_query_length=16"], "{dir}: is a directory"),
    "conll-train-is-a-dir": (["run_ner", "--data_dir={ner}", "--do_train", "--max_seq_length=32", "--no_progress",
                              "--max_steps=1"],
                             "{ner}/eng.train: is a directory"),
    "extract-input-is-a-dir": (["extract_features", "--input_file={dir}", "--output_file={out}"],
                               "{dir}: is a directory"),
    # The feature cache (on by default) keys on the data file: it must not stat a missing one first.
    "missing-data-dir-with-cache": (["run_classifier", "--task_name=MRPC", "--data_dir={tmp}/nowhere", "--do_train",
                                     "--max_seq_length=32", "--cache_dir={tmp}/cache"],
                                    "{tmp}/nowhere/train.tsv: file not found"),
    # Already one line before these checks; kept so.
    "missing-file": (["run_squad", "--train_file={tmp}/nope.json", "--do_train", "--max_seq_length=64",
                      "--max_query_length=16"], "{tmp}/nope.json: file not found"),
    "malformed-tsv-line": (["run_classifier", "--task_name=MRPC", "--data_dir={bad_glue}", "--do_train", *QUICK],
                           "{bad_glue}/train.tsv:2: expected at least 5 tab-separated columns"),
    # The prediction file is read before training starts, not after it (nothing written proves it).
    "malformed-test-tsv-line": (["run_classifier", "--task_name=MRPC", "--data_dir={bad_test}", "--do_train",
                                 "--do_predict", *QUICK], "{bad_test}/test.tsv:2: expected at least"),
}


@pytest.mark.parametrize("case", INPUTS)
def test_bad_input_paths(ws, capsys, case):
    argv, culprit = INPUTS[case]
    if argv[0] != "extract_features":
        argv = [*argv, "--output_dir={out}"]
    before = tree(ws["tmp"])
    line = cli_error(capsys, ["-q", *(arg.format(**ws) for arg in argv), *MODEL])
    assert culprit.format(**ws) in line
    assert tree(ws["tmp"]) == before


# Every command that writes a directory (--output_dir, convert's destination) or a file (--output_file).
OUTPUT_DIRS = {
    "run_classifier": ["--task_name=MRPC", f"--data_dir={SAMPLE}", "--do_train", *MODEL],
    "run_ner": [f"--data_dir={FIXTURES / 'ner'}", "--do_train", *MODEL],
    "run_squad": [f"--train_file={FIXTURES / 'squad' / 'tiny-v1.1.json'}", "--do_train", *MODEL],
    "run_multiple_choice": ["--task=swag", f"--data_dir={FIXTURES / 'multiple_choice' / 'swag'}", "--do_train",
                            *MODEL],
    "run_pretraining": ["--input_file={tmp}/shards", "--do_train", *MODEL],
    "prune": [f"--model={TF / 'bert_model.ckpt'}", f"--vocab_file={TF / 'vocab.txt'}", "--method=magnitude",
              "--heads=0.5"],
    "convert": [str(TF / "bert_model.ckpt")],
    "quantize": [],  # the packaged MiniLM; the path is checked before it loads
}
OUTPUT_FILES = {
    "build_vocab": ["--input_file={text}", "--min_frequency=1"],
    "extract_features": ["--input_file={text}", *MODEL],
}
OUTPUTS = [
    *(pytest.param(command, "{file}", "is a file, not a directory", id=f"{command}-is-a-file")
      for command in OUTPUT_DIRS),
    *(pytest.param(command, "{dir}", "is a directory; give the name of a file", id=f"{command}-is-a-dir")
      for command in OUTPUT_FILES),
    *(pytest.param(command, "{file}/sub/out", "cannot be created: {file} is a file", id=f"{command}-under-a-file")
      for command in [*OUTPUT_DIRS, *OUTPUT_FILES]),
]


def output_case(ws: dict, command: str, out: str) -> tuple[list[str], str]:
    """`command`'s argv writing to `out`, and how its error must name that output."""
    out = out.format(**ws)
    if command == "convert":
        named = [out], f"destination {out}"
    else:
        flag = f"--output_file={out}" if command in OUTPUT_FILES else f"--output_dir={out}"
        named = [flag], flag
    args = {**OUTPUT_DIRS, **OUTPUT_FILES}[command]
    return ["-q", command, *(arg.format(**ws) for arg in args), *named[0]], named[1]


@pytest.mark.parametrize("out, problem", [("{file}/model.onnx", "cannot be created: {file} is a file"),
                                          ("{dir}", "give a file name ending in .onnx")], ids=["under-a-file", "dir"])
def test_bad_export_output(ws, capsys, out, problem):
    before = tree(ws["tmp"])
    line = cli_error(capsys, ["-q", "export", f"--output={out.format(**ws)}"])
    assert problem.format(**ws) in line
    assert tree(ws["tmp"]) == before


@pytest.mark.parametrize("command, out, problem", OUTPUTS)
def test_bad_output_paths(ws, capsys, command, out, problem):
    argv, culprit = output_case(ws, command, out)
    before = tree(ws["tmp"])
    line = cli_error(capsys, argv)
    assert culprit in line and problem.format(**ws) in line
    assert tree(ws["tmp"]) == before  # the file left as it was, nothing created under it


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere: permissions not enforced")
@pytest.mark.parametrize("command", ["run_classifier", "build_vocab"])
def test_output_under_a_read_only_dir(ws, capsys, command):
    argv, culprit = output_case(ws, command, "{dir}/out")
    ws["dir"].chmod(0o500)
    try:
        line = cli_error(capsys, argv)
    finally:
        ws["dir"].chmod(0o700)
    assert culprit in line and f"no permission to write in {ws['dir']}" in line
    assert not any(ws["dir"].iterdir())
