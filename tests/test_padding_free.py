"""The padding-free encoder path against the padded one and against transformers, heads included."""

import pytest
import torch

from bertkit import heads, modeling
from bertkit.heads import BertModel
from bertkit.modeling import TokenIndex, use_padding_free
from helpers import random_batch, tiny_config


def head_inputs(name: str, config, seed: int = 0) -> dict:
    """A padded batch (rows of 11, 9 and 7 real tokens) with labels for `name`."""
    g = torch.Generator().manual_seed(seed)
    if name == "BertForMultipleChoice":
        flat = random_batch(config, batch=6, seed=seed)
        batch = {k: v.view(2, 3, -1) for k, v in flat.items()}
        return {**batch, "labels": torch.tensor([2, 0])}
    batch = random_batch(config, seed=seed)
    B, T = batch["input_ids"].shape
    if name == "BertForSequenceClassification":
        batch["labels"] = torch.randint(0, config.num_labels, (B,), generator=g)
    elif name == "BertForTokenClassification":
        labels = torch.randint(0, config.num_labels, (B, T), generator=g)
        batch["labels"] = labels.masked_fill(batch["attention_mask"] == 0, -100)
    elif name == "BertForPreTraining":
        labels = torch.randint(0, config.vocab_size, (B, T), generator=g)
        batch["labels"] = labels.masked_fill(torch.rand(B, T, generator=g) > 0.3, -100)
        batch["labels"][batch["attention_mask"] == 0] = -100
        batch["next_sentence_label"] = torch.tensor([0, 1, 1])
    return batch


def scores(name: str, out) -> list[torch.Tensor]:
    """Every tensor a head returns that is defined at real tokens (the hidden states at padding are not)."""
    if name == "BertModel":
        return [out.pooled_output]
    if name == "BertForQuestionAnswering":  # its loss is tested below
        return [out.start_logits, out.end_logits]
    if name == "BertForPreTraining":
        return [out.prediction_logits, out.seq_relationship_logits, out.loss]
    return [out.logits, out.loss]


def real_rows(batch: dict) -> torch.Tensor:
    return batch["attention_mask"].reshape(-1, batch["attention_mask"].shape[-1]).bool()


def at_real_tokens(x: torch.Tensor, batch: dict) -> torch.Tensor:
    """Per-token outputs at real tokens only (their padding positions hold nothing defined)."""
    mask = batch["attention_mask"]
    return x[mask.bool()] if x.dim() >= mask.dim() and x.shape[:mask.dim()] == mask.shape else x


def build(name: str, **overrides):
    torch.manual_seed(0)
    cls = BertModel if name == "BertModel" else getattr(heads, name)
    # transformers sizes qa_outputs by num_labels (2: start and end)
    return cls(tiny_config(num_labels=2 if name == "BertForQuestionAnswering" else 3, **overrides))


HEADS = ["BertModel", *[n for n in heads.MODEL_CLASSES if n != "BertModel"]]


@pytest.mark.parametrize("name", HEADS)
def test_outputs_and_gradients_equal_the_padded_path(name):
    # Dropout off, train mode: what is compared is the arithmetic, not the random masks.
    model = build(name, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).train()
    batch = head_inputs(name, model.config)
    results = {}
    keep = real_rows(batch)
    for unpad in (False, True):
        model.zero_grad()
        out = model(**batch, unpad=unpad, output_hidden_states=True)
        encoder = out if name == "BertModel" else out.encoder_output
        loss = sum(at_real_tokens(s, batch).sum() for s in scores(name, out)) + encoder.sequence_output[keep].sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[unpad] = ([s.detach() for s in scores(name, out)], encoder, grads)
        assert len(encoder.hidden_states) == model.config.num_hidden_layers + 1
    (s_pad, enc_pad, g_pad), (s_free, enc_free, g_free) = results[False], results[True]
    for a, b in zip(s_pad, s_free):
        assert (at_real_tokens(a, batch) - at_real_tokens(b, batch)).abs().max() <= 1e-5
    for a, b in zip(enc_pad.hidden_states, enc_free.hidden_states):
        assert (a - b)[keep].abs().max() <= 1e-5
        assert torch.all(b[~keep] == 0)  # documented: zeros at padding
    assert g_pad.keys() == g_free.keys() and len(g_pad) > 10
    for key in g_pad:
        assert (g_pad[key] - g_free[key]).abs().max() <= 1e-5, key


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("unpad", [False, True])
def test_both_paths_match_transformers(transformers_module, tmp_path, name, unpad):
    ours = build(name).eval()
    ours.save_pretrained(tmp_path)
    theirs = getattr(transformers_module, name).from_pretrained(tmp_path).eval()
    batch = head_inputs(name, ours.config)
    with torch.no_grad():
        a = ours(**batch, unpad=unpad)
        b = theirs(**batch)
    if name == "BertModel":
        assert (a.sequence_output - b.last_hidden_state)[real_rows(batch)].abs().max() <= 1e-5
    theirs_scores = [b.pooler_output] if name == "BertModel" else [
        getattr(b, field) for field in {"BertForQuestionAnswering": ("start_logits", "end_logits"),
                                        "BertForPreTraining": ("prediction_logits", "seq_relationship_logits",
                                                               "loss")}.get(name, ("logits", "loss"))]
    for x, y in zip(scores(name, a), theirs_scores, strict=True):
        assert (at_real_tokens(x, batch) - at_real_tokens(y, batch)).abs().max() <= 1e-5


def test_question_answering_trains_on_the_padded_path_by_default():
    # Its loss is a softmax over all T positions, padding included (as Google's and HF's): only the
    # padded path computes the padding rows, so the head picks it when positions are given.
    model = build("BertForQuestionAnswering").eval()
    batch = random_batch(model.config)
    positions = dict(start_positions=torch.tensor([1, 3, 20]), end_positions=torch.tensor([2, 5, 20]))
    with torch.no_grad():
        auto = model(**batch, **positions)
        padded = model(**batch, **positions, unpad=False)
        free = model(**batch, unpad=True)
    assert torch.equal(auto.loss, padded.loss)
    keep = real_rows(batch)
    assert (auto.start_logits - free.start_logits)[keep].abs().max() <= 1e-5


def test_attentions_head_mask_and_layerdrop_work_padding_free():
    model = build("BertModel").eval()
    batch = random_batch(model.config)
    head_mask = torch.ones(2, 4)
    head_mask[0, 1] = 0
    with torch.no_grad():
        a = model(**batch, unpad=False, output_attentions=True, head_mask=head_mask)
        b = model(**batch, unpad=True, output_attentions=True, head_mask=head_mask)
    keep = real_rows(batch)
    assert (a.sequence_output - b.sequence_output)[keep].abs().max() <= 1e-5
    for x, y in zip(a.attentions, b.attentions):
        # Probabilities of real query tokens; padding queries attend to nothing meaningful either way.
        assert (x - y).permute(0, 2, 1, 3)[keep].abs().max() <= 1e-6


def test_the_automatic_choice_follows_the_padding_share():
    full = torch.ones(4, 10, dtype=torch.long)
    light = full.clone()
    light[0, 9] = 0  # 2.5% padding
    heavy = full.clone()
    heavy[:, 6:] = 0  # 40% padding
    assert not use_padding_free(None, None) and not use_padding_free(full, None)
    assert not use_padding_free(light, None) and use_padding_free(heavy, None)
    assert use_padding_free(light, True) and not use_padding_free(heavy, False)
    assert modeling.UNPAD_THRESHOLD < 0.4


def test_token_index_round_trips_and_keeps_row_order():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1]])
    tokens = TokenIndex.from_mask(mask)
    x = torch.arange(9.0).view(3, 3, 1)
    flat = tokens.unpad(x)
    assert flat.view(-1).tolist() == [0.0, 1.0, 3.0, 7.0, 8.0]
    assert torch.equal(tokens.pad(flat), x * mask.unsqueeze(-1))


def test_padding_free_minilm_matches_transformers(transformers_module, minilm_path):
    ours = BertModel.from_pretrained(minilm_path).eval()
    theirs = transformers_module.BertModel.from_pretrained(str(minilm_path)).eval()
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([40, 7, 25, 33])
    mask = (torch.arange(40)[None] < lengths[:, None]).long()
    ids = torch.randint(999, 20000, (4, 40), generator=g) * mask
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask, unpad=True), theirs(ids, attention_mask=mask)
    keep = mask.bool()
    assert (a.sequence_output - b.last_hidden_state)[keep].abs().max() <= 1e-5
    assert (a.pooled_output - b.pooler_output).abs().max() <= 1e-5
