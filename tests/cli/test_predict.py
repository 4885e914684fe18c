"""bertkit predict: positional texts, .txt/.tsv/.jsonl input files, JSONL output in input order, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.inference.pipeline import pipeline

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
    assert main(["-q", "predict", f"--model={model}", f"--input_file={path}", f"--output_file={out}", "--top_k=0"]) == 0
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
