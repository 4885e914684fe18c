"""Pruning: heads and neurons removed for real equal the masked model; save -> load; transformers; sparsity."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from bertkit.compress.prune import (importance_scores, keep_pruned_at_zero, magnitude_prune, magnitude_scores,
                                    prune_heads, prune_neurons, prune_structured, remaining_heads, select_lowest,
                                    sparsity_report)
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from helpers import random_batch, tiny_config


def _model(layers=3, **kw):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny_config(num_hidden_layers=layers, **kw)).eval()


def _batch(config, seed=0):
    batch = random_batch(config, seed=seed)
    batch["labels"] = torch.tensor([0, 1, 1])
    return batch


def _masked_reference(model, pruned_heads, neurons):
    """The unpruned model with those heads masked (head_mask) and those neurons zeroed."""
    reference = copy.deepcopy(model)
    mask = torch.ones(model.config.num_hidden_layers, model.config.num_attention_heads)
    for layer, heads in pruned_heads.items():
        mask[int(layer), heads] = 0.0
    with torch.no_grad():
        for layer, positions in neurons.items():
            dense = reference.bert.encoder.layer[layer].intermediate.dense
            dense.weight[positions] = 0.0  # GELU(0) = 0: the neuron contributes nothing
            dense.bias[positions] = 0.0
    return reference, mask


@pytest.mark.parametrize("method", ["importance", "magnitude"])
def test_pruned_model_equals_the_masked_model(method, tmp_path):
    model = _model()
    batch = _batch(model.config)
    scores = importance_scores(model, [batch, _batch(model.config, seed=1)]) if method == "importance" \
        else magnitude_scores(model)
    assert all(s.shape == (4,) for s in scores.heads) and all(s.shape == (37,) for s in scores.neurons)
    neurons = select_lowest(scores.neurons, 0.4)
    reference, mask = _masked_reference(model, {}, neurons)
    summary = prune_structured(model, heads=0.5, neurons=0.4, scores=scores)
    reference, mask = _masked_reference(reference, summary["heads_removed"], {})
    assert sum(map(len, summary["heads_removed"].values())) == 6
    assert summary["parameters_after"] < summary["parameters_before"]
    assert model.bert.encoder.layer[0].attention.self.query.weight.shape[0] == 8 * model.config.layer_num_heads[0]
    with torch.no_grad():
        expected = reference(**batch, head_mask=mask).logits
        got = model(**batch).logits
    assert (got - expected).abs().max() < 1e-5

    model.save_pretrained(tmp_path)
    loaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.load_report.missing == [] and loaded.load_report.mismatched == []
    assert loaded.config.pruned_heads == {int(k): v for k, v in summary["heads_removed"].items()}
    assert loaded.config.layer_intermediate_sizes == summary["layer_intermediate_sizes"]
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, got)


def test_importance_scores_leave_the_model_as_it_was():
    model = _model()
    model.train()
    model.classifier.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = importance_scores(model, [_batch(model.config)], normalize=False)
    assert model.training and not model.classifier.weight.requires_grad
    assert model.bert.pooler.dense.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(s.sum() > 0 for s in scores.heads + scores.neurons)
    # the head score is |d loss / d head_mask| of the model's own head_mask
    mask = torch.ones(3, 4, requires_grad=True)
    model.eval()
    model(**_batch(model.config), head_mask=mask).loss.backward()
    assert torch.allclose(torch.stack(scores.heads), mask.grad.abs(), atol=1e-6)
    with pytest.raises(ConfigError, match="labels"):
        importance_scores(model, [random_batch(model.config)])


def test_heads_pruned_twice_keep_original_numbers(tmp_path):
    model = _model()
    batch = _batch(model.config)
    reference, mask = _masked_reference(model, {0: [0, 2], 1: [3]}, {})
    prune_heads(model, {0: [2], 1: [3]})
    assert remaining_heads(model.config, 0) == [0, 1, 3]
    prune_heads(model, {0: [0, 2]})  # 2 is gone already: ignored
    assert model.config.pruned_heads == {0: [0, 2], 1: [3]}
    assert model.config.layer_num_heads == [2, 3, 4]
    with torch.no_grad():
        assert (model(**batch).logits - reference(**batch, head_mask=mask).logits).abs().max() < 1e-5
    with pytest.raises(ConfigError, match="without attention heads"):
        prune_heads(model, {0: [1, 3]})
    with pytest.raises(ConfigError, match="all 37 neurons"):
        prune_neurons(model, {1: range(37)})


def test_select_lowest_keeps_a_unit_per_layer():
    scores = [torch.tensor([0.1, 0.2]), torch.tensor([5.0, 6.0, 7.0])]
    assert select_lowest(scores, 0.6) == {0: [0], 1: [0, 1]}  # 3 of 5, layer 0 keeps one
    assert select_lowest(scores, 2) == {0: [0], 1: [0]}
    assert select_lowest(scores, 0.34, scope="layer") == {0: [0], 1: [0]}


def _prune_like_transformers_v4(hf_model, pruned_heads):
    """What transformers v4's from_pretrained did with config.pruned_heads (BertAttention.prune_heads);
    transformers v5 no longer prunes on load, so the test applies it by hand there."""
    from transformers.pytorch_utils import prune_linear_layer

    config = hf_model.config
    size = config.hidden_size // config.num_attention_heads
    for layer, heads in pruned_heads.items():
        attention = hf_model.bert.encoder.layer[int(layer)].attention
        keep = [h for h in range(config.num_attention_heads) if h not in set(heads)]
        index = torch.cat([torch.arange(h * size, (h + 1) * size) for h in keep])
        attention.self.query = prune_linear_layer(attention.self.query, index)
        attention.self.key = prune_linear_layer(attention.self.key, index)
        attention.self.value = prune_linear_layer(attention.self.value, index)
        attention.output.dense = prune_linear_layer(attention.output.dense, index, dim=1)
        attention.self.num_attention_heads = len(keep)
        attention.self.all_head_size = len(keep) * size


def test_heads_pruned_as_transformers_does_load_in_transformers(transformers_module, tmp_path):
    transformers = transformers_module
    model = _model()
    prune_heads(model, {0: [1, 2], 2: [0]})
    model.save_pretrained(tmp_path)
    batch = random_batch(model.config)
    if hasattr(transformers.BertModel, "prune_heads"):  # transformers v4 prunes on load
        theirs = transformers.BertForSequenceClassification.from_pretrained(tmp_path).eval()
    else:
        config = transformers.BertConfig.from_pretrained(tmp_path)
        pruned = {int(k): v for k, v in config.pruned_heads.items()}
        assert pruned == {0: [1, 2], 2: [0]}
        theirs = transformers.BertForSequenceClassification(config).eval()
        _prune_like_transformers_v4(theirs, pruned)
        missing, unexpected = theirs.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
        assert unexpected == [] and all("position_ids" in k or "token_type_ids" in k for k in missing)
    with torch.no_grad():
        ours = model(**batch).logits
        assert (theirs(**batch).logits - ours).abs().max() < 1e-5
    # A config with HF's pruned_heads only (as transformers v4 writes it) builds the same model in bertkit.
    config = json.loads((tmp_path / "config.json").read_text())
    del config["layer_num_heads"], config["layer_intermediate_sizes"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with torch.no_grad():
        assert torch.equal(BertForSequenceClassification.from_pretrained(tmp_path).eval()(**batch).logits, ours)


def test_unstructured_magnitude_pruning_and_report():
    model = _model()
    masks = magnitude_prune(model, 0.6)
    report = sparsity_report(model)
    assert abs(report.sparsity - 0.6) < 0.01
    assert all(".encoder.layer." in name and name.endswith(".weight") for name in report.tensors)
    assert len(report.tensors) == 3 * 6 and model.bert.embeddings.word_embeddings.weight.count_nonzero() > 0
    assert "total" in str(report) and report.to_dict()["zeros"] == report.zeros
    # pruned weights stay zero through an optimizer step
    hooks = keep_pruned_at_zero(model, masks)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(**_batch(model.config)).loss.backward()
    optimizer.step()
    assert abs(sparsity_report(model).sparsity - report.sparsity) < 1e-9
    for hook in hooks:
        hook.remove()
    per_tensor = magnitude_prune(_model(), 0.5, scope="layer")
    assert all(abs(1 - m.float().mean().item() - 0.5) < 0.02 for m in per_tensor.values())
