"""pipeline(backend="onnx") and int8 checkpoints: the same answers as the torch pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bertkit import heads, quantize
from bertkit.cli.main import main
from bertkit.compress.quantize import Int8Linear
from bertkit.errors import ConfigError
from bertkit.inference.pipeline import pipeline
from helpers import TINY_VOCAB, tiny_config

TEXTS = ["the man was in the house", "a dog and a cat", "she said that it was on the table at night"]


def saved(tmp_path, cls, name="model", **config):
    torch.manual_seed(0)
    directory = tmp_path / name
    cls(tiny_config(**config)).save_pretrained(directory)
    shutil.copyfile(TINY_VOCAB, directory / "vocab.txt")
    return directory


@pytest.fixture
def classifier(tmp_path):
    return saved(tmp_path, heads.BertForSequenceClassification, num_labels=3)


def test_onnx_backend_gives_the_torch_answers(classifier):
    pytest.importorskip("onnxruntime")
    torch_answers = pipeline(classifier, dtype="fp32")(TEXTS, top_k=None)
    p = pipeline(classifier, backend="onnx")
    assert type(p.model).__name__ == "OnnxModel"
    onnx_answers = p(TEXTS, top_k=None)
    for ours, theirs in zip(torch_answers, onnx_answers):
        assert [a["label"] for a in ours] == [a["label"] for a in theirs]
        np.testing.assert_allclose([a["score"] for a in ours], [a["score"] for a in theirs], atol=1e-5)


def test_onnx_backend_uses_the_exported_file_beside_the_checkpoint(classifier):
    pytest.importorskip("onnxruntime")
    assert main(["-q", "export", "--model", str(classifier), "--output_file", str(classifier / "model.onnx")]) == 0
    p = pipeline(classifier, backend="onnx")
    assert p.model.path == classifier / "model.onnx"


def test_fill_mask_through_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    directory = saved(tmp_path, heads.BertForPreTraining)
    text = "the [MASK] was in the [MASK]"
    ours, theirs = pipeline(directory, dtype="fp32")(text, top_k=3), pipeline(directory, backend="onnx")(text, top_k=3)
    for a, b in zip(ours, theirs):
        assert [c["token"] for c in a] == [c["token"] for c in b]
        np.testing.assert_allclose([c["score"] for c in a], [c["score"] for c in b], atol=1e-5)


def test_int8_checkpoints_load_in_the_pipeline(classifier, tmp_path):
    for name in ("eval_results.txt", "metrics.jsonl", "training_curves.png"):  # the run's, not the copy's
        (classifier / name).write_text("x\n")
    (classifier / "checkpoint-10").mkdir()
    (classifier / "1_Pooling").mkdir()
    (classifier / "1_Pooling" / "config.json").write_text("{}")
    assert main(["-q", "quantize", "--model", str(classifier), "--output_dir", str(tmp_path / "int8")]) == 0
    assert sorted(p.name for p in (tmp_path / "int8").iterdir()) == \
        ["1_Pooling", "config.json", "model.safetensors", "vocab.txt"]
    p = pipeline(tmp_path / "int8")
    assert isinstance(p.model.bert.encoder.layer[0].intermediate.dense, Int8Linear) and p.device.type == "cpu"
    fp32_scores = [[a["score"] for a in answer] for answer in pipeline(classifier, dtype="fp32")(TEXTS, top_k=None)]
    int8_scores = [[a["score"] for a in answer] for answer in p(TEXTS, top_k=None)]
    np.testing.assert_allclose(int8_scores, fp32_scores, atol=0.02)
    with pytest.raises(ConfigError, match="run on CPU"):
        pipeline(tmp_path / "int8", device="cuda")


def test_bad_backend_and_int8_onnx_are_clear_errors(classifier, tmp_path):
    with pytest.raises(ConfigError, match="backend='tensorrt'"):
        pipeline(classifier, backend="tensorrt")
    model = quantize(heads.BertForSequenceClassification.from_pretrained(classifier))
    model.save_pretrained(tmp_path / "int8")
    shutil.copyfile(TINY_VOCAB, tmp_path / "int8" / "vocab.txt")
    pytest.importorskip("onnx")
    with pytest.raises(ConfigError, match="--int8"):
        pipeline(tmp_path / "int8", backend="onnx")


def test_an_exported_directory_runs_without_torch_weights(classifier, tmp_path):
    """bertkit export --output_dir: model.onnx with config and vocab, which pipeline, predict and
    serve run as they are (no re-export at start-up), named by the directory or the .onnx file."""
    pytest.importorskip("onnxruntime")
    (classifier / "eval_results.txt").write_text("eval_accuracy = 0.5\n")  # a training run's files stay behind
    (classifier / "metrics.jsonl").write_text("{}\n")
    out = tmp_path / "exported"
    assert main(["-q", "export", "--model", str(classifier), "--output_dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx", "vocab.txt"]
    want = pipeline(classifier, dtype="fp32")(TEXTS, top_k=None)
    for model in (out, out / "model.onnx"):
        p = pipeline(model, backend="onnx" if model == out else "torch")  # an .onnx file implies the backend
        assert type(p.model).__name__ == "OnnxModel" and p.model.path == out / "model.onnx"
        for ours, theirs in zip(want, p(TEXTS, top_k=None)):
            np.testing.assert_allclose([a["score"] for a in ours], [a["score"] for a in theirs], atol=1e-5)
    with pytest.raises(ConfigError, match="ONNX file not found"):
        pipeline(tmp_path / "absent.onnx")


def test_export_defaults_to_the_model_directory(classifier, capsys):
    pytest.importorskip("onnxruntime")
    before = sorted(p.name for p in classifier.iterdir())
    assert main(["-q", "export", "--model", str(classifier)]) == 0
    assert sorted(p.name for p in classifier.iterdir()) == sorted([*before, "model.onnx"])
    assert pipeline(classifier, backend="onnx").model.path == classifier / "model.onnx"


def test_export_of_the_packaged_model_needs_an_output(capsys):
    assert main(["-q", "export"]) == 2
    assert "give --output_dir" in capsys.readouterr().err


def test_predict_with_the_onnx_backend(classifier, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    assert main(["-q", "export", "--model", str(classifier), "--output_dir", str(tmp_path / "onnx")]) == 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "onnx"), "--backend", "onnx", TEXTS[0]]) == 0
    answer = json.loads(capsys.readouterr().out)
    want = pipeline(classifier, dtype="fp32")(TEXTS[0])[0]
    assert answer["label"] == want["label"] and abs(answer["score"] - want["score"]) < 1e-5


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_save_pretrained_writes_what_pipeline_needs(classifier, tmp_path, backend):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    (classifier / "metrics.jsonl").write_text("{}\n")
    p = pipeline(classifier, backend=backend, max_seq_length=16)
    saved_dir = p.save_pretrained(tmp_path / "saved")
    assert not (saved_dir / "metrics.jsonl").exists()
    again = pipeline(saved_dir, backend=backend)
    assert again.max_seq_length == 16 and again.task == p.task and type(again.model) is type(p.model)
    long_text = " ".join(["the house"] * 20)
    np.testing.assert_allclose([a["score"] for a in again(long_text, top_k=None)],
                               [a["score"] for a in p(long_text, top_k=None)], atol=1e-6)
