"""Every head against transformers' BertFor* with the same weights: logits and losses, fp32, <= 1e-5."""

import pytest
import torch

from bertkit import heads
from helpers import random_batch, tiny_config


def _load_both(transformers, tmp_path, name, **config_overrides):
    torch.manual_seed(0)
    ours = getattr(heads, name)(tiny_config(**config_overrides)).eval()
    ours.save_pretrained(tmp_path)
    theirs, info = getattr(transformers, name).from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    return ours, theirs.eval()


def _close(a, b, tol=1e-5):
    assert a.shape == b.shape
    assert (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("num_labels", [1, 3])
def test_sequence_classification(transformers_module, tmp_path, num_labels):
    ours, theirs = _load_both(transformers_module, tmp_path, "BertForSequenceClassification", num_labels=num_labels)
    batch = random_batch(ours.config)
    labels = torch.tensor([0.5, 1.5, 3.0]) if num_labels == 1 else torch.tensor([0, 2, 1])
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
    _close(a.logits, b.logits)
    _close(a.loss, b.loss)


def test_multiple_choice(transformers_module, tmp_path):
    ours, theirs = _load_both(transformers_module, tmp_path, "BertForMultipleChoice")
    flat = random_batch(ours.config, batch=6)
    batch = {k: v.view(2, 3, -1) for k, v in flat.items()}  # (B=2, C=3, T)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
    assert a.logits.shape == (2, 3)
    _close(a.logits, b.logits)
    _close(a.loss, b.loss)


def test_token_classification_ignores_minus_100(transformers_module, tmp_path):
    ours, theirs = _load_both(transformers_module, tmp_path, "BertForTokenClassification", num_labels=5)
    batch = random_batch(ours.config)
    labels = torch.randint(0, 5, batch["input_ids"].shape)
    labels[batch["attention_mask"] == 0] = -100
    labels[:, 3] = -100
    with torch.no_grad():
        a, b = ours(**batch, labels=labels), theirs(**batch, labels=labels)
    keep = batch["attention_mask"].bool()  # padding rows are undefined (zeros on the padding-free path)
    _close(a.logits[keep], b.logits[keep])
    _close(a.loss, b.loss)
    # Changing the logits at an ignored position must not change the loss.
    with torch.no_grad():
        other_labels = labels.clone()
        other_labels[:, 3] = -100
        assert ours(**batch, labels=other_labels).loss == a.loss


def test_question_answering_clamps_out_of_range_positions(transformers_module, tmp_path):
    ours, theirs = _load_both(transformers_module, tmp_path, "BertForQuestionAnswering")
    batch = random_batch(ours.config)
    start, end = torch.tensor([1, 4, 50]), torch.tensor([2, 40, 60])  # 40, 50, 60 are past T=11
    with torch.no_grad():
        a = ours(**batch, start_positions=start, end_positions=end)
        b = theirs(**batch, start_positions=start, end_positions=end)
    _close(a.start_logits, b.start_logits)
    _close(a.end_logits, b.end_logits)
    _close(a.loss, b.loss)


def test_pretraining_heads_and_tied_decoder(transformers_module, tmp_path):
    ours, theirs = _load_both(transformers_module, tmp_path, "BertForPreTraining")
    batch = random_batch(ours.config)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 2] = batch["input_ids"][:, 2]
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        a = ours(**batch, labels=labels, next_sentence_label=nsp)
        b = theirs(**batch, labels=labels, next_sentence_label=nsp)
    keep = batch["attention_mask"].bool()  # padding rows are undefined (zeros on the padding-free path)
    _close(a.prediction_logits[keep], b.prediction_logits[keep])
    _close(a.seq_relationship_logits, b.seq_relationship_logits)
    _close(a.loss, b.loss)
    assert theirs.cls.predictions.decoder.weight.data_ptr() == theirs.bert.embeddings.word_embeddings.weight.data_ptr()


def test_pretraining_tie_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = heads.BertForPreTraining(tiny_config())
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = heads.BertForPreTraining.from_pretrained(tmp_path)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    assert torch.equal(loaded.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    assert not loaded.load_report.missing and not loaded.load_report.unexpected


def test_next_sentence_weight_scales_only_the_nsp_loss():
    torch.manual_seed(0)
    model = heads.BertForPreTraining(tiny_config()).eval()
    batch = random_batch(model.config)
    labels = batch["input_ids"].clone()
    nsp = torch.tensor([0, 1, 0])
    with torch.no_grad():
        bert = model(**batch, labels=labels, next_sentence_label=nsp)
        model.next_sentence_weight = 0.0
        mlm_only = model(**batch, labels=labels, next_sentence_label=nsp)
        model.next_sentence_weight = 0.5
        half = model(**batch, labels=labels, next_sentence_label=nsp)
    assert torch.equal(bert.loss, bert.masked_lm_loss + bert.next_sentence_loss)
    assert torch.equal(mlm_only.loss, bert.masked_lm_loss)
    assert torch.equal(mlm_only.next_sentence_loss, bert.next_sentence_loss)  # still reported
    _close(half.loss, bert.masked_lm_loss + 0.5 * bert.next_sentence_loss)


def test_training_without_nsp_loss_leaves_the_pooler_out_of_every_output_graph():
    # DistributedDataParallel takes parameters that any output's graph reaches for used, and would
    # wait for their gradients; the model tells the Trainer to look for unused ones.
    model = heads.BertForPreTraining(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).train()
    assert not model.may_leave_parameters_unused
    model.next_sentence_weight = 0.0
    assert model.may_leave_parameters_unused
    batch = random_batch(model.config)
    output = model(**batch, labels=batch["input_ids"], next_sentence_label=torch.tensor([0, 1, 0]))
    assert output.encoder_output.pooled_output.grad_fn is None and output.seq_relationship_logits.grad_fn is None
    assert output.next_sentence_loss.grad_fn is None and output.loss.grad_fn is not None
    output.loss.backward()
    assert model.bert.pooler.dense.weight.grad is None and model.cls.seq_relationship.weight.grad is None
    with torch.no_grad():  # the NSP logits are those of training with it
        model.next_sentence_weight = 1.0
        assert torch.equal(model(**batch).seq_relationship_logits, output.seq_relationship_logits)


def test_masked_lm_positions_equal_the_full_projection():
    torch.manual_seed(0)
    model = heads.BertForPreTraining(tiny_config()).eval()
    batch = random_batch(model.config)
    positions = torch.tensor([[1, 4], [0, 2], [3, 3]])
    with torch.no_grad():
        full = model(**batch).prediction_logits
        gathered = model(**batch, masked_lm_positions=positions).prediction_logits
    expected = torch.stack([full[i, positions[i]] for i in range(3)])
    _close(gathered, expected)
