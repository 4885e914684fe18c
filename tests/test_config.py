import json

import pytest

from bertkit.config import BertConfig
from bertkit.errors import ConfigError

GOOGLE_CONFIG = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 128,
    "initializer_range": 0.02, "intermediate_size": 512, "max_position_embeddings": 512,
    "num_attention_heads": 2, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 30522,
}


def test_reads_google_config_and_round_trips_unknown_keys(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps({**GOOGLE_CONFIG, "directionality": "bidi", "pooler_fc_size": 768}))
    config = BertConfig.from_json_file(path)
    assert config.hidden_size == 128 and config.num_hidden_layers == 2
    assert config.layer_norm_eps == 1e-12  # Google's config has no such key; its code uses 1e-12
    assert config.extra == {"directionality": "bidi", "pooler_fc_size": 768}
    out = tmp_path / "again.json"
    config.to_json_file(out)
    again = json.loads(out.read_text())
    assert again["directionality"] == "bidi" and again["pooler_fc_size"] == 768
    assert BertConfig.from_json_file(out) == config


def test_reads_hf_config_with_labels(tmp_path, minilm_path):
    config = BertConfig.from_json_file(minilm_path / "config.json")
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 6, 12)
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**GOOGLE_CONFIG, "model_type": "bert", "id2label": {"0": "neg", "1": "pos", "2": "neu"}}))
    config = BertConfig.from_json_file(path)
    assert config.id2label == {0: "neg", 1: "pos", 2: "neu"} and config.num_labels == 3
    config.to_json_file(tmp_path / "out.json", architecture="BertForSequenceClassification")
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["id2label"] == {"0": "neg", "1": "pos", "2": "neu"}
    assert written["architectures"] == ["BertForSequenceClassification"] and written["model_type"] == "bert"


def test_overrides_apply_and_typos_are_refused(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(GOOGLE_CONFIG))
    assert BertConfig.from_json_file(path, num_labels=5).num_labels == 5
    with pytest.raises(ConfigError, match="hidden_dropout"):
        BertConfig.from_json_file(path, hidden_dropout=0.2)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"line 1"),
        (json.dumps({**GOOGLE_CONFIG, "num_attention_heads": 3}), "multiple of"),
        (json.dumps({**GOOGLE_CONFIG, "hidden_act": "mish"}), "hidden_act"),
        (json.dumps({**GOOGLE_CONFIG, "model_type": "roberta"}), "model_type"),
        (json.dumps({**GOOGLE_CONFIG, "position_embedding_type": "relative_key"}), "absolute"),
        (json.dumps([1, 2]), "JSON object"),
    ],
)
def test_bad_configs_name_the_file_and_key(tmp_path, content, message):
    path = tmp_path / "bert_config.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        BertConfig.from_json_file(path)
    assert str(path) in str(info.value)


def test_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nowhere.json"):
        BertConfig.from_json_file(tmp_path / "nowhere.json")
