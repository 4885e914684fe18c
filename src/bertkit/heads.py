"""The model classes users load: BertModel and the task heads on top of it, with HF's parameter names
(`bert.*`, `classifier.*`, `qa_outputs.*`, `cls.*`).

Each head adds only its output layer and its loss; the encoder is the same BertModel everywhere.
Every class here gets from_pretrained / save_pretrained from PretrainedMixin (bertkit.checkpoint),
which modeling.py, pure nn code below the checkpoint layer, does not import.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bertkit import modeling
from bertkit.checkpoint.pretrained import PretrainedMixin
from bertkit.config import BertConfig
from bertkit.modeling import ACTIVATIONS, BertModelOutput, BertPreTrainedModel, Dropout


class BertModel(PretrainedMixin, modeling.BertModel):
    """modeling.BertModel, the encoder without a head, with from_pretrained / save_pretrained."""


@dataclass
class HeadOutput:
    """What every head returns: its scores, the loss when labels were given, and the encoder's output."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    encoder_output: BertModelOutput | None = None


@dataclass
class QuestionAnsweringOutput:
    start_logits: torch.Tensor  # (B, T)
    end_logits: torch.Tensor  # (B, T)
    loss: torch.Tensor | None = None
    encoder_output: BertModelOutput | None = None


@dataclass
class PreTrainingOutput:
    prediction_logits: torch.Tensor  # (B, T, V), or (B, P, V) at masked_lm_positions
    seq_relationship_logits: torch.Tensor  # (B, 2)
    loss: torch.Tensor | None = None
    masked_lm_loss: torch.Tensor | None = None
    next_sentence_loss: torch.Tensor | None = None
    encoder_output: BertModelOutput | None = None


def _encoder_kwargs(kwargs: dict) -> dict:
    allowed = ("attention_mask", "token_type_ids", "position_ids", "head_mask", "output_hidden_states",
               "output_attentions", "unpad")
    unknown = set(kwargs) - set(allowed)
    if unknown:
        raise TypeError(f"unexpected argument(s) {sorted(unknown)}; the encoder takes {allowed}")
    return kwargs


class BertForSequenceClassification(PretrainedMixin, BertPreTrainedModel):
    """[CLS] pooled vector -> dropout -> linear, with transformers' losses by the config's problem_type:
    regression (MSE), single_label_classification (cross-entropy) or multi_label_classification
    (binary cross-entropy on a sigmoid per label). Without one, as transformers decides: num_labels=1
    is regression, integer labels single-label, float label rows multi-label."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights(self.classifier)

    def forward(self, input_ids, labels=None, **kwargs) -> HeadOutput:
        encoded = self.bert(input_ids, **_encoder_kwargs(kwargs))
        logits = self.classifier(self.dropout(encoded.pooled_output))  # (B, num_labels)
        loss = None
        if labels is not None:
            problem_type = self.config.extra.get("problem_type") or (
                "regression" if self.num_labels == 1 else
                "single_label_classification" if not labels.is_floating_point() else "multi_label_classification")
            if problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            elif problem_type == "multi_label_classification":
                loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return HeadOutput(logits=logits, loss=loss, encoder_output=encoded)


class BertForMultipleChoice(PretrainedMixin, BertPreTrainedModel):
    """Inputs (B, C, T): every choice is encoded on its own, then scored; softmax runs over C."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.init_weights(self.classifier)

    def forward(self, input_ids, labels=None, **kwargs) -> HeadOutput:
        B, C, T = input_ids.shape
        flat = {k: (v.reshape(B * C, -1) if torch.is_tensor(v) and v.dim() == 3 else v)
                for k, v in _encoder_kwargs(kwargs).items()}
        encoded = self.bert(input_ids.reshape(B * C, T), **flat)
        logits = self.classifier(self.dropout(encoded.pooled_output)).view(B, C)  # (B, C)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return HeadOutput(logits=logits, loss=loss, encoder_output=encoded)


class BertForTokenClassification(PretrainedMixin, BertPreTrainedModel):
    """One label per token; label -100 (sub-word continuations, padding) is ignored by the loss."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertModel(config, add_pooling_layer=False)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.init_weights(self.classifier)

    def forward(self, input_ids, labels=None, **kwargs) -> HeadOutput:
        encoded = self.bert(input_ids, **_encoder_kwargs(kwargs))
        logits = self.classifier(self.dropout(encoded.sequence_output))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1), ignore_index=-100)
        return HeadOutput(logits=logits, loss=loss, encoder_output=encoded)


class BertForQuestionAnswering(PretrainedMixin, BertPreTrainedModel):
    """Start and end logits per token (SQuAD)."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights(self.qa_outputs)

    def forward(self, input_ids, start_positions=None, end_positions=None, **kwargs) -> QuestionAnsweringOutput:
        if start_positions is not None and kwargs.get("unpad") is None:
            # The loss's softmax runs over all T positions, padding included, as Google's and HF's
            # do: the padding rows must be computed for the same loss, so training takes the padded path.
            kwargs["unpad"] = False
        encoded = self.bert(input_ids, **_encoder_kwargs(kwargs))
        start_logits, end_logits = self.qa_outputs(encoded.sequence_output).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            # An answer outside this window (doc_stride splitting) is clamped to T and ignored,
            # as the reference does, rather than crashing or training on a wrong token.
            ignored = start_logits.size(1)
            start = start_positions.reshape(-1).clamp(0, ignored)
            end = end_positions.reshape(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits, start, ignore_index=ignored)
                    + F.cross_entropy(end_logits, end, ignore_index=ignored)) / 2
        return QuestionAnsweringOutput(start_logits, end_logits, loss, encoded)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Module):
    """Masked-LM decoder; its weight is the word-embedding matrix (tied), its bias is its own."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states):
        return F.linear(self.transform(hidden_states), self.decoder.weight, self.bias)  # (..., V)


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)


class BertForPreTraining(PretrainedMixin, BertPreTrainedModel):
    """Masked LM + next-sentence prediction, with the decoder tied to the word embeddings."""

    tied_weights = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"}

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.init_weights(self.cls)
        # The NSP loss's weight in `loss` (BERT: 1). A training choice, not part of the checkpoint;
        # 0 trains the masked LM alone, as RoBERTa does, while NSP logits are still computed.
        self.next_sentence_weight = 1.0

    def tie_weights(self) -> None:
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    @property
    def may_leave_parameters_unused(self) -> bool:
        # NSP weight 0 leaves the pooler and the NSP classifier out of the loss (see forward).
        return super().may_leave_parameters_unused or not self.next_sentence_weight

    def forward(self, input_ids, labels=None, next_sentence_label=None, masked_lm_positions=None,
                **kwargs) -> PreTrainingOutput:
        """`labels` are (B, T) with -100 at unmasked tokens, or (B, P) aligned with
        `masked_lm_positions` (B, P) as Google's features store them. Giving the positions computes
        the vocabulary projection only where tokens were masked, which is most of the MLM cost."""
        encoded = self.bert(input_ids, **_encoder_kwargs(kwargs))
        hidden = encoded.sequence_output  # (B, T, H)
        if masked_lm_positions is not None:
            index = masked_lm_positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
            hidden = hidden.gather(1, index)  # (B, P, H)
        prediction_logits = self.cls.predictions(hidden)
        # Training without NSP in the loss, its logits (and loss, still reported) carry no graph:
        # DistributedDataParallel's find_unused_parameters takes every parameter that a graph in
        # the outputs reaches for used, and would wait forever for the pooler's gradient.
        nsp_outside_loss = self.training and not self.next_sentence_weight
        if nsp_outside_loss:
            encoded.pooled_output = encoded.pooled_output.detach()
        with torch.set_grad_enabled(torch.is_grad_enabled() and not nsp_outside_loss):
            seq_relationship_logits = self.cls.seq_relationship(encoded.pooled_output)  # (B, 2)
        masked_lm_loss = next_sentence_loss = None
        if labels is not None:
            masked_lm_loss = F.cross_entropy(
                prediction_logits.reshape(-1, prediction_logits.size(-1)), labels.reshape(-1), ignore_index=-100
            )
        if next_sentence_label is not None:
            next_sentence_loss = F.cross_entropy(seq_relationship_logits, next_sentence_label.reshape(-1))
        # Weight 0 leaves NSP out of the sum rather than multiplying it by 0: the classifier and the
        # pooler then get no gradient at all, so the optimizer skips them (weight decay included).
        weighted = (next_sentence_loss * self.next_sentence_weight
                    if next_sentence_loss is not None and self.next_sentence_weight else None)
        parts = [x for x in (masked_lm_loss, weighted) if x is not None]
        loss = sum(parts) if parts else None
        return PreTrainingOutput(prediction_logits, seq_relationship_logits, loss, masked_lm_loss,
                                 next_sentence_loss, encoded)


MODEL_CLASSES = {
    cls.__name__: cls
    for cls in (BertModel, BertForSequenceClassification, BertForMultipleChoice, BertForTokenClassification,
                BertForQuestionAnswering, BertForPreTraining)
}


def model_class_for(config: BertConfig) -> type:
    """The class a saved config names in `architectures` (BertModel when it names none we have)."""
    names = config.extra.get("architectures") or []
    return next((MODEL_CLASSES[n] for n in names if n in MODEL_CLASSES), BertModel)
