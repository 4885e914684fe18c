"""Surgery: extended positions, re-initialised layers and patterns, recorded in the report."""

import pytest
import torch

from bertkit.checkpoint.surgery import Surgery, reinit_parameters, reinit_top_layers, resize_position_embeddings
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from bertkit.heads import BertModel
from helpers import tiny_config


def _saved(tmp_path, **overrides):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(**overrides))
    model.save_pretrained(tmp_path)
    return model


def _changed(before: dict, model) -> set[str]:
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_extending_positions_past_the_checkpoint_keeps_trained_rows(tmp_path):
    original = _saved(tmp_path, hidden_size=64, num_attention_heads=4, max_position_embeddings=512)
    model = BertForSequenceClassification.from_pretrained(tmp_path, surgery=Surgery(max_position_embeddings=1024))
    table = model.bert.embeddings.position_embeddings.weight
    assert table.shape == (1024, 64) and model.config.max_position_embeddings == 1024
    assert torch.equal(table[:512], original.bert.embeddings.position_embeddings.weight)
    assert table[512:].std().item() == pytest.approx(0.8796 * 0.02, rel=0.05)
    name, old, new, how = model.load_report.resized[0]
    assert (name, old, new) == ("bert.embeddings.position_embeddings.weight", (512, 64), (1024, 64))
    others = {k: v for k, v in original.state_dict().items() if "position_embeddings" not in k}
    loaded = model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in others.items() if not k.startswith("classifier"))
    with torch.no_grad():
        out = model.eval()(torch.ones(1, 700, dtype=torch.long))
    assert out.logits.shape == (1, 2)


def test_tiled_positions_repeat_the_trained_rows():
    torch.manual_seed(0)
    model = BertModel(tiny_config(max_position_embeddings=16))
    trained = model.embeddings.position_embeddings.weight.detach().clone()
    resize_position_embeddings(model, 40, init="tile")
    table = model.embeddings.position_embeddings.weight
    assert torch.equal(table[:16], trained) and torch.equal(table[16:32], trained)
    assert torch.equal(table[32:], trained[:8])
    assert "tiled" in model.load_report.resized[0][3]
    with pytest.raises(ConfigError, match="random, tile, hierarchical, interpolate"):
        resize_position_embeddings(model, 50, init="zeros")


def test_hierarchical_positions_follow_su_jianlins_formula():
    torch.manual_seed(0)
    model = BertModel(tiny_config(max_position_embeddings=16))
    p = model.embeddings.position_embeddings.weight.detach().clone()
    resize_position_embeddings(model, 40, init="hierarchical", alpha=0.4)
    q = model.embeddings.position_embeddings.weight.detach()
    assert torch.equal(q[:16], p)  # the trained rows, exactly
    u = (p - 0.4 * p[0]) / 0.6
    for k in (16, 17, 31, 32, 39):  # q[i * n + j] = alpha u_i + (1 - alpha) u_j
        i, j = divmod(k, 16)
        torch.testing.assert_close(q[k], 0.4 * u[i] + 0.6 * u[j], rtol=1e-5, atol=1e-6)
    assert len({tuple(row.tolist()) for row in q}) == 40  # every position distinct
    assert "hierarchical decomposition (alpha=0.4)" in model.load_report.resized[0][3]
    with pytest.raises(ConfigError, match="16 \\* 16 = 256"):
        resize_position_embeddings(BertModel(tiny_config(max_position_embeddings=16)), 257, init="hierarchical")


def test_interpolated_positions_stretch_the_trained_table():
    torch.manual_seed(0)
    model = BertModel(tiny_config(max_position_embeddings=16))
    p = model.embeddings.position_embeddings.weight.detach().clone()
    resize_position_embeddings(model, 31, init="interpolate")  # 31 rows: every other one is a midpoint
    q = model.embeddings.position_embeddings.weight.detach()
    torch.testing.assert_close(q[0::2], p, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(q[1::2], (p[:-1] + p[1:]) / 2, rtol=1e-5, atol=1e-6)
    assert "interpolated linearly" in model.load_report.resized[0][3]


def test_position_init_flag_reaches_the_surgery():
    from bertkit.cli.common import surgery_options
    from bertkit.cli.main import build_parser

    args = build_parser("run_classifier").parse_args(
        ["run_classifier", "--task_name=MRPC", "--data_dir=d", "--output_dir=o", "--do_train=true",
         "--max_position_embeddings=1024", "--position_init=hierarchical"])
    assert surgery_options(args) == Surgery(max_position_embeddings=1024, position_init="hierarchical")


def test_reinit_top_layers_redraws_only_those_layers(tmp_path):
    _saved(tmp_path, num_hidden_layers=4, hidden_size=64, intermediate_size=256)
    plain = BertForSequenceClassification.from_pretrained(tmp_path)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(tmp_path, surgery=Surgery(reinit_top_layers=2))
    changed = _changed(before, model) - {"classifier.weight", "classifier.bias"}
    expected_prefixes = ("bert.encoder.layer.2.", "bert.encoder.layer.3.", "bert.pooler.")
    weights = {k for k in changed if k.endswith("weight") and "LayerNorm" not in k}
    assert weights and all(k.startswith(expected_prefixes) for k in changed)
    assert {k for k in before if k.startswith(expected_prefixes) and k.endswith(".weight") and "LayerNorm" not in k} == weights
    dense = model.bert.encoder.layer[3].intermediate.dense.weight
    assert dense.std().item() == pytest.approx(0.8796 * 0.02, rel=0.05)
    assert torch.count_nonzero(model.bert.encoder.layer[3].intermediate.dense.bias) == 0
    assert torch.all(model.bert.encoder.layer[2].output.LayerNorm.weight == 1)
    assert set(model.load_report.reinitialized) == {k for k in before if k.startswith(expected_prefixes)}
    assert "reinit_top_layers=2" in model.load_report.summary()


def test_reinit_patterns_and_errors(tmp_path):
    _saved(tmp_path)
    plain = BertForSequenceClassification.from_pretrained(tmp_path)
    before = {k: v.clone() for k, v in plain.state_dict().items()}
    model = BertForSequenceClassification.from_pretrained(
        tmp_path, surgery=Surgery(reinit=["bert.encoder.layer.0.attention.self.query.*"], reinit_pooler=False))
    assert _changed(before, model) - {"classifier.weight", "classifier.bias"} == {
        "bert.encoder.layer.0.attention.self.query.weight"}  # the bias was zero already
    assert model.load_report.reinitialized == ["bert.encoder.layer.0.attention.self.query.weight",
                                               "bert.encoder.layer.0.attention.self.query.bias"]
    with pytest.raises(ConfigError, match="matches no parameter"):
        reinit_parameters(model, ["bert.encoder.layer.9.*"])
    with pytest.raises(ConfigError, match="has 2 encoder layers"):
        reinit_top_layers(model, 3)


def test_surgery_in_memory_records_a_report():
    model = BertModel(tiny_config())
    reinit_top_layers(model, 1, include_pooler=False)
    assert model.load_report.reinitialized and all(n.startswith("encoder.layer.1.") for n in model.load_report.reinitialized)


def test_surgery_is_one_typed_argument(tmp_path):
    _saved(tmp_path, max_position_embeddings=64)
    with pytest.raises(ConfigError, match="surgery=Surgery"):
        BertForSequenceClassification.from_pretrained(tmp_path, max_position_embeddings=128)
    with pytest.raises(ConfigError, match="position_init 'mirror'"):
        Surgery(max_position_embeddings=128, position_init="mirror")
    with pytest.raises(ConfigError, match="reinit_top_layers must be 0 or more"):
        Surgery(reinit_top_layers=-1)
    model = BertForSequenceClassification.from_pretrained(
        tmp_path, surgery=Surgery(max_position_embeddings=128, position_init="tile"))
    table = model.bert.embeddings.position_embeddings.weight
    assert torch.equal(table[64:], table[:64])
