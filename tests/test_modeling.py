"""BertModel against the reference (transformers) with the same weights, plus its own behaviour."""

import pytest
import torch

from bertkit.heads import BertModel
from helpers import random_batch, tiny_config


def _pair(transformers, tmp_path, **config_overrides):
    """The same random weights in bertkit and transformers, via our save and their from_pretrained."""
    torch.manual_seed(0)
    ours = BertModel(tiny_config(**config_overrides)).eval()
    ours.save_pretrained(tmp_path)
    theirs, info = transformers.BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == [] or set(info["missing_keys"]) == set(), info
    return ours, theirs.eval()


def test_matches_transformers_on_padded_batches(transformers_module, tmp_path):
    ours, theirs = _pair(transformers_module, tmp_path)
    batch = random_batch(ours.config)
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    keep = batch["attention_mask"].bool()
    assert (a.sequence_output - b.last_hidden_state)[keep].abs().max() <= 1e-5
    assert (a.pooled_output - b.pooler_output).abs().max() <= 1e-5


def test_hidden_states_and_attentions_match_the_eager_reference(transformers_module, tmp_path):
    ours, _ = _pair(transformers_module, tmp_path)
    theirs = transformers_module.BertModel.from_pretrained(tmp_path, attn_implementation="eager").eval()
    batch = random_batch(ours.config)
    with torch.no_grad():
        a = ours(**batch, output_hidden_states=True, output_attentions=True)
        b = theirs(**batch, output_hidden_states=True, output_attentions=True)
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    keep = batch["attention_mask"].bool()
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y)[keep].abs().max() <= 1e-5
    for x, y in zip(a.attentions, b.attentions):
        assert x.shape == (3, 4, 11, 11)
        assert (x - y).abs().max() <= 1e-5
    # The eager path (taken for attentions) and the SDPA path agree.
    with torch.no_grad():
        fast = ours(**batch)
    assert (fast.sequence_output - a.sequence_output)[keep].abs().max() <= 1e-5


def test_matches_transformers_on_the_real_minilm_checkpoint(transformers_module, minilm_path):
    ours = BertModel.from_pretrained(minilm_path).eval()
    theirs = transformers_module.BertModel.from_pretrained(str(minilm_path)).eval()
    batch = random_batch(ours.config, batch=4, length=40)
    # Real word pieces (ids >= 999 in the uncased vocab), not [unused] slots; padding stays 0.
    batch["input_ids"] = (batch["input_ids"] % 20000 + 999) * batch["attention_mask"]
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    keep = batch["attention_mask"].bool()
    assert (a.sequence_output - b.last_hidden_state)[keep].abs().max() <= 1e-4
    assert (a.pooled_output - b.pooler_output).abs().max() <= 1e-5
    assert not ours.load_report.missing and not ours.load_report.unexpected


def test_google_initialisation():
    torch.manual_seed(0)
    config = tiny_config(hidden_size=64, intermediate_size=256, vocab_size=3000)
    model = BertModel(config)
    weight = model.embeddings.word_embeddings.weight
    # A normal truncated at 2 std has std 0.8796 * sigma.
    assert weight.std().item() == pytest.approx(0.8796 * config.initializer_range, rel=0.03)
    assert weight.abs().max() <= 2 * config.initializer_range
    dense = model.encoder.layer[0].intermediate.dense
    assert torch.count_nonzero(dense.bias) == 0
    norm = model.encoder.layer[1].output.LayerNorm
    assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_head_mask_removes_a_head_and_keeps_gradients():
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    batch = random_batch(model.config)
    head_mask = torch.ones(2, 4, requires_grad=True)
    out = model(**batch, head_mask=head_mask)
    out.sequence_output.sum().backward()
    assert head_mask.grad is not None and head_mask.grad.abs().sum() > 0
    masked = torch.ones(2, 4)
    masked[0, 1] = 0
    with torch.no_grad():
        changed = model(**batch, head_mask=masked).sequence_output
    assert (changed - out.sequence_output).abs().max() > 1e-4


def test_sequence_longer_than_the_position_table_is_a_clear_error():
    model = BertModel(tiny_config(max_position_embeddings=8))
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model(torch.ones(1, 9, dtype=torch.long))


def test_bf16_autocast_runs_and_stays_close():
    torch.manual_seed(0)
    model = BertModel(tiny_config()).eval()
    batch = random_batch(model.config)
    with torch.no_grad():
        full = model(**batch).sequence_output
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(**batch).sequence_output
    # LayerNorm runs in fp32 under autocast, so the output is fp32; the matmuls were bf16.
    assert 0 < (low.float() - full).abs().max()
    assert (low.float() - full)[batch["attention_mask"].bool()].abs().max() < 0.1


def test_fast_dropout_keeps_the_right_fraction_and_the_expectation():
    from bertkit.modeling import dropout, keep_mask

    torch.manual_seed(0)
    mask = keep_mask(torch.Size((1000, 1001)), 0.1, torch.device("cpu"))
    assert mask.shape == (1000, 1001) and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(0.9, abs=2e-3)
    # Neighbouring lanes of one 64-bit word must be independent.
    pairs = mask.view(-1)[: 1000 * 1000].view(-1, 4)
    assert (pairs[:, 0] & pairs[:, 1]).float().mean().item() == pytest.approx(0.81, abs=3e-3)
    x = torch.ones(2000, 500)
    dropped = dropout(x, 0.25, training=True)
    assert dropped.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert dropped.mean().item() == pytest.approx(1.0, abs=1e-2)
    assert dropout(x, 0.25, training=False) is x


def test_training_mode_is_stochastic_and_eval_is_not():
    torch.manual_seed(0)
    model = BertModel(tiny_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1))
    batch = random_batch(model.config)
    model.train()
    a, b = model(**batch).sequence_output, model(**batch).sequence_output
    assert (a - b).abs().max() > 1e-3
    a.sum().backward()
    assert model.encoder.layer[0].attention.self.query.weight.grad is not None
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**batch).sequence_output, model(**batch).sequence_output)


def test_modeling_is_pure_nn_code_below_the_checkpoint_layer():
    """modeling.py imports nothing that reads or writes files, not even inside a method: loading and
    saving come from the layer above it (bertkit.checkpoint.pretrained), so there is no import cycle."""
    import ast
    import inspect

    import bertkit
    from bertkit import heads, modeling

    tree = ast.parse(inspect.getsource(modeling))
    imported = set()
    for node in ast.walk(tree):  # every import, at module level or nested in a function
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
    assert {name for name in imported if name.startswith(("bertkit", "."))} == {"bertkit.config"}
    assert not {"pathlib", "os", "json", "safetensors", "io"} & {name.split(".")[0] for name in imported}
    assert not hasattr(modeling.BertModel, "from_pretrained") and not hasattr(modeling.BertModel, "save_pretrained")
    # the public classes load and save, and are the nn classes underneath
    assert bertkit.BertModel is heads.BertModel and issubclass(heads.BertModel, modeling.BertModel)
    for cls in heads.MODEL_CLASSES.values():
        assert callable(cls.from_pretrained) and callable(cls.save_pretrained)
        assert issubclass(cls, modeling.BertPreTrainedModel)
    # the encoder inside a head is the loadable class too, as before (model.bert.save_pretrained works)
    assert type(heads.BertForSequenceClassification(tiny_config()).bert) is heads.BertModel
