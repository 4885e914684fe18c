"""from_pretrained: every HF layout, name mapping, the load report, and the errors a user can cause."""

import json
import logging
import pickle

import pytest
import torch
from safetensors.torch import save_file

from bertkit.errors import BertkitError, CheckpointError, ConfigError
from bertkit.heads import BertForPreTraining, BertForSequenceClassification
from bertkit.heads import BertModel
from helpers import random_batch, tiny_config


def _saved(tmp_path, cls=BertModel, **overrides):
    torch.manual_seed(0)
    model = cls(tiny_config(**overrides)).eval()
    model.save_pretrained(tmp_path)
    return model


def _same_outputs(a, b, batch):
    with torch.no_grad():
        x, y = a.eval()(**batch), b.eval()(**batch)
    keep = batch["attention_mask"].bool()
    return (x.sequence_output - y.sequence_output)[keep].abs().max() <= 1e-6


def test_safetensors_pytorch_bin_and_file_paths_load_the_same(tmp_path):
    model = _saved(tmp_path)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    batch = random_batch(model.config)
    from_dir = BertModel.from_pretrained(tmp_path)
    assert from_dir.load_report.format == "HF safetensors"
    assert _same_outputs(model, from_dir, batch)
    from_bin = BertModel.from_pretrained(tmp_path / "pytorch_model.bin")
    assert from_bin.load_report.format == "HF pytorch"
    assert _same_outputs(model, from_bin, batch)
    assert _same_outputs(model, BertModel.from_pretrained(tmp_path / "config.json"), batch)


def test_sharded_checkpoints_load(tmp_path, transformers_module):
    model = _saved(tmp_path / "src")
    theirs = transformers_module.BertModel.from_pretrained(tmp_path / "src")
    theirs.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    loaded = BertModel.from_pretrained(tmp_path / "sharded")
    assert "shards" in loaded.load_report.format
    assert not loaded.load_report.missing
    assert _same_outputs(model, loaded, random_batch(model.config))


def test_prefix_is_added_or_removed_and_gamma_beta_are_renamed(tmp_path):
    model = _saved(tmp_path / "plain")
    old_style = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        old_style[name] = tensor.clone()
    old_style["embeddings.position_ids"] = torch.arange(64)[None]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text((tmp_path / "plain" / "config.json").read_text())
    torch.save(old_style, tmp_path / "old" / "pytorch_model.bin")

    classifier = BertForSequenceClassification.from_pretrained(tmp_path / "old")
    report = classifier.load_report
    assert sorted(report.missing) == ["classifier.bias", "classifier.weight"]
    assert ("embeddings.LayerNorm.gamma", "bert.embeddings.LayerNorm.weight") in report.renamed
    assert ("embeddings.position_ids", "buffer, recomputed by the model") in report.skipped
    assert torch.equal(classifier.bert.embeddings.LayerNorm.weight, model.embeddings.LayerNorm.weight)

    classifier.save_pretrained(tmp_path / "task")  # keys now carry `bert.`
    back = BertModel.from_pretrained(tmp_path / "task")
    assert sorted(back.load_report.unexpected) == ["classifier.bias", "classifier.weight"]
    assert _same_outputs(model, back, random_batch(model.config))


def test_report_lists_missing_unexpected_and_logs_a_summary(tmp_path, caplog):
    _saved(tmp_path, cls=BertForPreTraining)
    with caplog.at_level(logging.INFO, logger="bertkit.checkpoint"):
        model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    report = model.load_report
    assert sorted(report.missing) == ["classifier.bias", "classifier.weight"]
    assert sorted(report.unexpected) == sorted(
        ["cls.predictions.bias", "cls.predictions.transform.dense.weight", "cls.predictions.transform.dense.bias",
         "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.LayerNorm.bias",
         "cls.seq_relationship.weight", "cls.seq_relationship.bias"])
    assert len(report.loaded) == len([k for k in model.state_dict() if k.startswith("bert.")])
    assert "missing" in caplog.text and "classifier.weight" in caplog.text and "cls.* (7)" in caplog.text
    assert report.to_dict()["model_class"] == "BertForSequenceClassification"


def test_head_of_another_size_is_reported_as_mismatched(tmp_path):
    _saved(tmp_path, cls=BertForSequenceClassification, num_labels=2)
    model = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5)
    assert model.classifier.weight.shape == (5, 32)
    assert ("classifier.weight", (2, 32), (5, 32)) in model.load_report.mismatched
    assert "classifier.weight" not in model.load_report.missing


def test_encoder_shape_mismatch_is_an_error_naming_the_tensor(tmp_path):
    _saved(tmp_path)
    with pytest.raises(CheckpointError, match=r"embeddings.word_embeddings.weight.*\(99, 32\).*\(120, 32\)"):
        BertModel.from_pretrained(tmp_path, vocab_size=120)
    model = BertModel.from_pretrained(tmp_path, vocab_size=120, ignore_mismatched_sizes=True)
    assert model.load_report.mismatched[0][0] == "embeddings.word_embeddings.weight"


def test_real_legacy_bin_checkpoint_loads_with_weights_only(shared_data, transformers_module):
    path = shared_data / "checkpoints" / "camphr-tiny-bert-ja-v2"
    ours = BertModel.from_pretrained(path)
    assert not ours.load_report.missing and not ours.load_report.unexpected
    theirs = transformers_module.BertModel.from_pretrained(str(path)).eval()
    batch = random_batch(ours.config, length=9)
    with torch.no_grad():
        a, b = ours.eval()(**batch), theirs(**batch)
    assert (a.sequence_output - b.last_hidden_state)[batch["attention_mask"].bool()].abs().max() <= 1e-5


class Payload:
    def __reduce__(self):
        return (print, ("arbitrary code ran",))


def test_arbitrary_pickles_are_refused(tmp_path):
    _saved(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with open(tmp_path / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weight": Payload()}, handle)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        BertModel.from_pretrained(tmp_path)


def test_errors_name_what_was_looked_for(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nowhere"):
        BertModel.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="model.safetensors.*pytorch_model.bin"):
        BertModel.from_pretrained(tmp_path / "empty")
    _saved(tmp_path / "noconfig")
    (tmp_path / "noconfig" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json or bert_config.json in"):
        BertModel.from_pretrained(tmp_path / "noconfig")
    _saved(tmp_path / "truncated")
    data = (tmp_path / "truncated" / "model.safetensors").read_bytes()
    (tmp_path / "truncated" / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        BertModel.from_pretrained(tmp_path / "truncated")
    _saved(tmp_path / "typo")
    with pytest.raises(ConfigError, match="hidden_dropout"):
        BertModel.from_pretrained(tmp_path / "typo", hidden_dropout=0.3)
    (tmp_path / "badindex").mkdir()
    (tmp_path / "badindex" / "config.json").write_text(json.dumps(tiny_config().to_hf_dict()))
    (tmp_path / "badindex" / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError, match="model-00001-of-00002.safetensors, which is missing"):
        BertModel.from_pretrained(tmp_path / "badindex")
    assert issubclass(CheckpointError, BertkitError)


def test_non_tensor_state_is_refused(tmp_path):
    _saved(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save({"step": 3}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        BertModel.from_pretrained(tmp_path)


def test_half_precision_weights_are_cast_on_load(tmp_path):
    model = _saved(tmp_path)
    save_file({k: v.half() for k, v in model.state_dict().items()}, tmp_path / "model.safetensors")
    loaded = BertModel.from_pretrained(tmp_path)
    assert loaded.embeddings.word_embeddings.weight.dtype == torch.float32
    assert torch.allclose(loaded.embeddings.word_embeddings.weight, model.embeddings.word_embeddings.weight, atol=1e-3)


def test_only_what_the_checkpoint_lacks_is_initialised(tmp_path, monkeypatch):
    """from_pretrained builds the model without Google's initialisation (the checkpoint overwrites
    it) and initialises only the missing and mismatched tensors, by the same scheme."""
    saved = _saved(tmp_path, cls=BertForSequenceClassification, num_labels=2)
    drawn = []
    trunc_normal = torch.nn.init.trunc_normal_
    monkeypatch.setattr(torch.nn.init, "trunc_normal_", lambda t, **kw: drawn.append(tuple(t.shape)) or trunc_normal(t, **kw))
    model = BertForPreTraining.from_pretrained(tmp_path)
    heads = model.cls.predictions
    assert sorted(drawn) == sorted([tuple(heads.transform.dense.weight.shape), tuple(model.cls.seq_relationship.weight.shape)])
    std = model.config.initializer_range
    assert 0 < heads.transform.dense.weight.abs().max() <= 2 * std and heads.transform.dense.bias.abs().max() == 0
    assert torch.equal(heads.transform.LayerNorm.weight, torch.ones_like(heads.transform.LayerNorm.weight))
    assert heads.decoder.weight is model.bert.embeddings.word_embeddings.weight  # tied, not drawn
    for name, tensor in saved.bert.state_dict().items():
        assert torch.equal(model.bert.state_dict()[name], tensor), name

    drawn.clear()  # a head of another size: the mismatched classifier is drawn anew, nothing else
    resized = BertForSequenceClassification.from_pretrained(tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    assert drawn == [(5, 32)] and resized.classifier.bias.abs().max() == 0

    drawn.clear()  # a model built directly is initialised whole, as before
    BertForSequenceClassification(saved.config)
    assert len(drawn) > 10
