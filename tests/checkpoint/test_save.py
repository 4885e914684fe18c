"""save_pretrained writes HF layout that transformers loads, atomically."""

import json
import os

import pytest
import torch

from bertkit.heads import BertForSequenceClassification
from bertkit.heads import BertModel
from helpers import hf_config, random_batch, tiny_config


def test_transformers_checkpoint_loads_in_bertkit_with_nothing_missing(tmp_path, transformers_module):
    torch.manual_seed(0)
    theirs = transformers_module.BertForSequenceClassification(hf_config(transformers_module, tiny_config(), num_labels=3)).eval()
    theirs.save_pretrained(tmp_path)
    ours = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    report = ours.load_report
    assert not report.missing and not report.unexpected and not report.mismatched
    batch = random_batch(ours.config)
    with torch.no_grad():
        assert (ours(**batch).logits - theirs(**batch).logits).abs().max() <= 1e-5


def test_layout_and_config(tmp_path):
    model = BertForSequenceClassification(tiny_config(num_labels=2, id2label={0: "no", 1: "yes"}))
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["model_type"] == "bert" and config["id2label"] == {"0": "no", "1": "yes"}


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = BertModel(tiny_config())
    model.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()

    import bertkit.checkpoint.save as save_module

    def crash(state, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(save_module, "save_file", crash)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
