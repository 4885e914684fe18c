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


def test_per_layer_fields_read_a_config_written_by_the_previous_version(tmp_path):
    # Before they were typed these keys sat at the top level too, pruned_heads with string layer keys.
    path = tmp_path / "config.json"
    old = {**GOOGLE_CONFIG, "model_type": "bert", "pruned_heads": {"1": [1, 1], "0": []},
           "layer_num_heads": [2, 1], "layer_intermediate_sizes": [512, 100], "layerdrop": 0.25,
           "kept_layers": [1, 3]}
    path.write_text(json.dumps(old))
    config = BertConfig.from_json_file(path)
    assert config.pruned_heads == {1: [1]} and config.layer_num_heads == [2, 1]
    assert config.layer_intermediate_sizes == [512, 100] and config.layerdrop == 0.25 and config.kept_layers == [1, 3]
    assert config.extra == {"model_type": "bert"}
    assert config.layer_sizes() == ([2, 1], [512, 100])
    config.to_json_file(tmp_path / "again.json")
    written = json.loads((tmp_path / "again.json").read_text())
    assert written["pruned_heads"] == {"1": [1]}  # HF's form: string layer keys
    assert BertConfig.from_json_file(tmp_path / "again.json") == config


def test_per_layer_fields_are_written_only_when_set(tmp_path):
    config = BertConfig(**GOOGLE_CONFIG)
    assert config.layer_sizes() == ([2, 2], [512, 512]) and config.pruned_heads == {} and config.layerdrop == 0.0
    assert not {"layer_num_heads", "layer_intermediate_sizes", "pruned_heads", "layerdrop",
                "kept_layers"} & set(config.to_dict())
    # HF's pruned_heads alone gives the head counts (as transformers v4 wrote it)
    assert BertConfig(**GOOGLE_CONFIG, pruned_heads={"0": [1]}).layer_sizes()[0] == [1, 2]
    assert BertConfig(**GOOGLE_CONFIG, pruned_heads=None).pruned_heads == {}
    copied = config.copy(layer_intermediate_sizes=[5, 6])
    copied.layer_intermediate_sizes[0] = 7
    assert config.layer_intermediate_sizes is None and copied.copy().layer_intermediate_sizes == [7, 6]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"layer_num_heads": [2]}, "'layer_num_heads' must be a list with one entry per layer"),
        ({"layer_num_heads": [2, 3]}, r"'layer_num_heads' must hold integers from 1 to 2"),
        ({"layer_num_heads": [2, 0]}, r"'layer_num_heads' must hold integers"),
        ({"layer_intermediate_sizes": [512, -1]}, "'layer_intermediate_sizes' must hold integers of at least 1"),
        ({"layer_intermediate_sizes": "512"}, "'layer_intermediate_sizes' must be a list"),
        ({"kept_layers": [3, 1]}, "'kept_layers' must be increasing"),
        ({"pruned_heads": {"2": [0]}}, r"'pruned_heads' names layer '2'; layers are 0..1"),
        ({"pruned_heads": {"x": [0]}}, r"'pruned_heads' names layer 'x'"),
        ({"pruned_heads": {"0": [5]}}, r"'pruned_heads' layer 0: expected a list of head numbers 0..1"),
        ({"pruned_heads": {"0": [0, 1]}}, "removes every head of layer 0"),
        ({"pruned_heads": [0]}, "'pruned_heads' must be an object"),
        ({"pruned_heads": {"0": [0]}, "layer_num_heads": [2, 2]}, "'layer_num_heads' .* and 'pruned_heads' .* disagree"),
        ({"layerdrop": 1.0}, r"'layerdrop' must be a number in \[0, 1\)"),
        ({"layerdrop": -0.1}, "'layerdrop'"),
        ({"layerdrop": "0.1"}, "'layerdrop'"),
    ],
)
def test_bad_per_layer_fields_name_the_key_and_file(tmp_path, values, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**GOOGLE_CONFIG, **values}))
    with pytest.raises(ConfigError, match=message) as info:
        BertConfig.from_json_file(path)
    assert str(path) in str(info.value)
