"""pipeline(backend="onnx") and int8 checkpoints: the same answers as the torch pipeline."""

from __future__ import annotations

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
    assert main(["-q", "export", "--model", str(classifier), "--output", str(classifier / "model.onnx")]) == 0
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
    assert main(["-q", "quantize", "--model", str(classifier), "--output_dir", str(tmp_path / "int8")]) == 0
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
