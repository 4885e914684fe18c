"""Google TF checkpoints (written by real TensorFlow, see tests/fixtures/tf) load bit-exact by name."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit.checkpoint.names import google_skip_reason, google_to_hf
from bertkit.errors import CheckpointError
from bertkit.heads import BertForPreTraining, BertForSequenceClassification
from bertkit.heads import BertModel
from helpers import random_batch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"

# Written out by hand from Google's modeling.py variable scopes, independent of names.py's rules.
HAND_MAP = {
    "bert/embeddings/word_embeddings": ("bert.embeddings.word_embeddings.weight", False),
    "bert/embeddings/LayerNorm/gamma": ("bert.embeddings.LayerNorm.weight", False),
    "bert/embeddings/LayerNorm/beta": ("bert.embeddings.LayerNorm.bias", False),
    "bert/encoder/layer_1/attention/self/key/kernel": ("bert.encoder.layer.1.attention.self.key.weight", True),
    "bert/encoder/layer_0/attention/output/dense/bias": ("bert.encoder.layer.0.attention.output.dense.bias", False),
    "bert/encoder/layer_0/attention/output/LayerNorm/gamma": ("bert.encoder.layer.0.attention.output.LayerNorm.weight", False),
    "bert/encoder/layer_1/intermediate/dense/kernel": ("bert.encoder.layer.1.intermediate.dense.weight", True),
    "bert/encoder/layer_1/output/dense/kernel": ("bert.encoder.layer.1.output.dense.weight", True),
    "bert/encoder/layer_1/output/LayerNorm/beta": ("bert.encoder.layer.1.output.LayerNorm.bias", False),
    "bert/pooler/dense/kernel": ("bert.pooler.dense.weight", True),
    "cls/predictions/transform/dense/kernel": ("cls.predictions.transform.dense.weight", True),
    "cls/predictions/transform/LayerNorm/gamma": ("cls.predictions.transform.LayerNorm.weight", False),
    "cls/predictions/output_bias": ("cls.predictions.bias", False),
    "cls/seq_relationship/output_weights": ("cls.seq_relationship.weight", False),
    "cls/seq_relationship/output_bias": ("cls.seq_relationship.bias", False),
    "output_weights": ("classifier.weight", False),
    "output_bias": ("classifier.bias", False),
    "cls/squad/output_weights": ("qa_outputs.weight", False),
    "cls/squad/output_bias": ("qa_outputs.bias", False),
}


def _expected(fixture: str, name: str) -> np.ndarray:
    return np.load(FIXTURES / fixture / "expected" / (name.replace("/", "__") + ".npy"))


def _variables(fixture: str) -> list[tuple[str, list[int], str]]:
    return json.loads((FIXTURES / fixture / "variables.json").read_text())["variables"]


def test_name_map_matches_the_hand_written_table():
    for google, expected in HAND_MAP.items():
        assert google_to_hf(google) == expected, google


@pytest.mark.parametrize("fixture", ["bert_tiny_pretraining", "bert_tiny_classifier", "bert_tiny_adam",
                                     "bert_tiny_sharded", "bert_tiny_fp16"])
def test_every_variable_is_mapped_or_skipped_with_a_reason(fixture):
    for name, _, _ in _variables(fixture):
        assert google_to_hf(name) is not None or google_skip_reason(name) is not None, name


@pytest.mark.parametrize("fixture, cls", [("bert_tiny_pretraining", BertForPreTraining),
                                          ("bert_tiny_classifier", BertForSequenceClassification),
                                          ("bert_tiny_adam", BertForPreTraining),
                                          ("bert_tiny_sharded", BertModel)])
def test_loaded_tensors_are_bit_exact(fixture, cls):
    model = cls.from_pretrained(FIXTURES / fixture)
    report = model.load_report
    assert not report.unexpected and not report.mismatched
    state = model.state_dict()
    prefix = "" if cls is BertModel else None
    for name, _, _ in _variables(fixture):
        mapped = google_to_hf(name)
        if mapped is None:
            continue
        target, transpose = mapped
        if prefix == "":
            target = target.removeprefix("bert.")
        value = _expected(fixture, name)
        assert np.array_equal(state[target].numpy(), value.T if transpose else value), name
    if fixture == "bert_tiny_adam":
        reasons = {reason for _, reason in report.skipped}
        assert reasons == {"optimizer slot", "training bookkeeping"}
        assert len(report.skipped) == 2 * len(report.loaded) + 1


def test_fp16_checkpoint_is_cast_exactly():
    model = BertModel.from_pretrained(FIXTURES / "bert_tiny_fp16")
    value = _expected("bert_tiny_fp16", "bert/encoder/layer_0/attention/self/query/kernel")
    assert value.dtype == np.float16
    assert torch.equal(model.encoder.layer[0].attention.self.query.weight, torch.from_numpy(value.T).float())


def test_path_forms_all_load_the_same_weights():
    base = FIXTURES / "bert_tiny_classifier"
    reference = BertForSequenceClassification.from_pretrained(base).state_dict()
    for path in (base / "bert_model.ckpt", base / "bert_model.ckpt.index",
                 base / "bert_model.ckpt.data-00000-of-00001"):
        loaded = BertForSequenceClassification.from_pretrained(path).state_dict()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_tf_checkpoint_gives_the_same_outputs_as_hf_layout_in_transformers(tmp_path, transformers_module):
    ours = BertForSequenceClassification.from_pretrained(FIXTURES / "bert_tiny_classifier").eval()
    ours.save_pretrained(tmp_path)
    theirs, info = transformers_module.BertForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = random_batch(ours.config)
    with torch.no_grad():
        assert (ours(**batch).logits - theirs.eval()(**batch).logits).abs().max() <= 1e-5


def test_corrupt_tf_checkpoint_is_a_checkpoint_error(tmp_path):
    source = FIXTURES / "bert_tiny_classifier"
    for item in source.iterdir():
        if item.is_file():
            (tmp_path / item.name).write_bytes(item.read_bytes())
    data = tmp_path / "bert_model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="bert_model.ckpt"):
        BertForSequenceClassification.from_pretrained(tmp_path)
