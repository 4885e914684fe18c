"""run_pretraining: masked LM + next-sentence prediction on create_pretraining_data's shards, on the one Trainer.

Google's run_pretraining.py: BertForPreTraining, from scratch (a bert_config.json) or from a
checkpoint (Google's or HF's), is trained on the instances with the MLM loss over the masked
positions only (`masked_lm_positions`: the vocabulary projection runs at those positions alone)
plus the NSP loss, and evaluated with Google's metrics `masked_lm_accuracy`, `masked_lm_loss`,
`next_sentence_accuracy` and `next_sentence_loss` (the Trainer writes them as `eval_<name>`), and
the MLM accuracy split by what the masked position showed (`masked_lm_accuracy_at_mask`,
`_at_random`, `_at_kept`).
Resuming, DDP, bf16, progress, TensorBoard and the curves come from the Trainer.

The two-phase schedule of the BERT paper (90% of the steps at length 128, then 10% at 512) is two
runs: phase 2 starts from phase 1's output folder (`init_checkpoint`) on shards built with the
longer max_seq_length; like Google's, it starts a fresh optimizer and schedule.

A model can also be taken past its trained length: `max_position_embeddings` larger than the
checkpoint's extends the position table at load time (the trained rows are copied unchanged).
Evaluation then also reports `masked_lm_accuracy_beyond_512`, the MLM accuracy over masked
positions at index 512 or more, which only the new rows serve: it is near chance at first and
rises as continued pre-training on long shards teaches them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.data.pretraining import PretrainingDataset, expand_shard_dirs, load_index, vocab_fingerprint
from bertkit.errors import ConfigError
from bertkit.heads import BertForPreTraining, PreTrainingOutput
from bertkit.tasks.base import Split, Task, option
from bertkit.tasks.pipeline import Feature, TextPipeline, parameter, softmax_rows
from bertkit.tokenization import FullTokenizer

logger = logging.getLogger("bertkit")
GOOGLE, OURS = "Google's pre-training flags", "bertkit's pre-training flags"  # run_pretraining's --help sections

BEYOND = 512  # masked_lm_accuracy_beyond_512: positions the original BERT position table does not have


@dataclass
class PretrainingTask(Task):
    """What run_pretraining needs beyond the model and the training arguments (Google's flag names)."""

    input_file: str | None = option(None, "create_pretraining_data output folder(s), comma-separated, globs allowed",
                                    group=GOOGLE)
    eval_input_file: str | None = option(None, "shards to evaluate on (default: --input_file)", group=OURS)
    do_train: bool = False
    do_eval: bool = False
    max_seq_length: int = 128
    max_predictions_per_seq: int = option(20, "the most masked positions of an instance (as the data was built)",
                                          group=GOOGLE, minimum=1)
    # Evaluation reads the first max_eval_steps * eval_batch_size instances.
    max_eval_steps: int = option(100, "evaluate on this many batches", group=GOOGLE)
    next_sentence_weight: float = option(1.0, "weight of the next-sentence loss in the training loss (default 1, "
                                              "BERT's); 0 trains the masked LM alone (RoBERTa's choice), NSP is "
                                              "still evaluated", group=OURS)
    max_eval_examples: int | None = None  # at most this many evaluation instances (besides max_eval_steps)

    model_class = BertForPreTraining
    name = "pretraining"
    label_names = ("labels", "next_sentence_label")

    def check(self, model, tokenizer) -> None:
        # No max_seq_length check here: check_data_fits names the flag that fits the shards (all of
        # them: the evaluation's first max_eval_steps batches are a part of its files).
        files = {self.input_file} if self.do_train else set()
        if self.do_eval:
            files.add(self.eval_input_file or self.input_file)
        for input_file in sorted(files):
            check_data_fits(PretrainingDataset(input_file), model, tokenizer, self)

    def configure(self, model) -> None:
        model.next_sentence_weight = self.next_sentence_weight

    def _read(self, split: str, eval_batch_size: int) -> PretrainingDataset:
        if split == "train":
            return PretrainingDataset(self.input_file)
        limit = self.max_eval_steps * eval_batch_size
        return PretrainingDataset(self.eval_input_file or self.input_file,
                                  limit=min(limit, self.max_eval_examples or limit))

    def dataset(self, split: str, tokenizer, args) -> Split:
        data = self._read(split, args.eval_batch_size)
        if split == "train":
            logger.info("%d instances (max_seq_length %d)", len(data), data.max_seq_length)
        mask_token_id = tokenizer.vocab.get("[MASK]") if tokenizer is not None else None
        return Split(split, data, extra={"mask_token_id": mask_token_id})

    def eval_step(self, output: PreTrainingOutput, batch: dict):
        return pretraining_step(output, batch)

    def metrics(self, data: Split, predictions, labels) -> dict[str, float]:
        return pretraining_metrics(predictions, labels, mask_token_id=data.extra["mask_token_id"])

    def validate(self) -> None:
        if not (self.do_train or self.do_eval):
            raise ConfigError("at least one of --do_train or --do_eval must be true")
        if self.do_train and not self.input_file:
            raise ConfigError("--do_train needs --input_file: the output folder of bertkit create_pretraining_data")
        if self.do_eval and not (self.eval_input_file or self.input_file):
            raise ConfigError("--do_eval needs --input_file or --eval_input_file")
        if self.max_eval_steps < 1:
            raise ConfigError(f"--max_eval_steps must be at least 1, got {self.max_eval_steps}")
        if not self.next_sentence_weight >= 0:
            raise ConfigError(f"--next_sentence_weight must be 0 or more, got {self.next_sentence_weight}")

    def data_index(self) -> dict:
        """The index of the first data set, for defaults (its vocab.txt and do_lower_case)."""
        first = expand_shard_dirs(self.input_file if self.do_train or not self.eval_input_file
                                  else self.eval_input_file)[0]
        return load_index(first)[1]


def pretraining_step(output: PreTrainingOutput, batch: dict):
    """What evaluation collects per instance: the predicted id at each masked position (B, P), the
    sum of the MLM losses over the instance's masked positions (B,), the NSP logits (B, 2), and
    where the masked positions are (B, P) and what each showed (B, P) for the accuracy by position
    and by what the model saw ([MASK], the kept token or a random one)."""
    logits = output.prediction_logits  # (B, P, V) at masked_lm_positions
    labels, positions = batch["labels"], batch["masked_lm_positions"]
    losses = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")  # (B, P)
    shown = batch["input_ids"].gather(1, positions)
    return logits.argmax(dim=-1), losses.sum(dim=1), output.seq_relationship_logits, positions, shown


def pretraining_metrics(predictions, labels, beyond: int = BEYOND, mask_token_id: int | None = None
                        ) -> dict[str, float]:
    """Google's run_pretraining metric_fn, plus the MLM accuracy at positions >= `beyond` when there are any.

    `predictions` are pretraining_step's, `labels` the MLM labels (B, P) and the NSP labels. With the
    [MASK] id, also the MLM accuracy by what each masked position showed (`masked_lm_accuracy_at_mask`,
    `_at_random`, `_at_kept`). Only the [MASK] positions measure the use of context: a model on the
    early plateau of pre-training copies the kept tokens (10% of the positions) and guesses frequent
    words elsewhere, which already scores about 13% overall.
    """
    predicted_ids, row_losses, nsp_logits, positions, shown = predictions
    mlm_labels, nsp_labels = labels
    real = mlm_labels != -100
    total = max(int(real.sum()), 1)
    correct = (predicted_ids == mlm_labels) & real
    nsp_labels = nsp_labels.reshape(-1)
    logits = nsp_logits.astype(np.float64)
    top = logits.max(axis=1)
    log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    nsp_loss = log_norm - logits[np.arange(len(logits)), nsp_labels]
    metrics = {
        "masked_lm_accuracy": float(correct.sum() / total),
        "masked_lm_loss": float(row_losses.astype(np.float64).sum() / total),
        "next_sentence_accuracy": float((logits.argmax(axis=1) == nsp_labels).mean()),
        "next_sentence_loss": float(nsp_loss.mean()),
    }
    far = real & (positions >= beyond)
    if far.any():
        metrics[f"masked_lm_accuracy_beyond_{beyond}"] = float(correct[far].sum() / far.sum())
    if mask_token_id is not None:
        for name, where in (("mask", shown == mask_token_id), ("kept", shown == mlm_labels),
                            ("random", (shown != mask_token_id) & (shown != mlm_labels))):
            where &= real
            if where.any():
                metrics[f"masked_lm_accuracy_at_{name}"] = float(correct[where].sum() / where.sum())
    return metrics


def check_data_fits(data: PretrainingDataset, model: BertForPreTraining, tokenizer, task: PretrainingTask) -> None:
    """Shards, flags, model and vocabulary must agree; say which flag to change when they do not."""
    where = ", ".join(str(d) for d, _ in data.indexes)
    config = model.config
    if data.max_seq_length > task.max_seq_length:
        raise ConfigError(f"{where} was built with max_seq_length={data.max_seq_length}, more than "
                          f"--max_seq_length={task.max_seq_length}; pass --max_seq_length={data.max_seq_length}")
    if data.max_predictions_per_seq > task.max_predictions_per_seq:
        raise ConfigError(f"{where} was built with max_predictions_per_seq={data.max_predictions_per_seq}, more "
                          f"than --max_predictions_per_seq={task.max_predictions_per_seq}; pass "
                          f"--max_predictions_per_seq={data.max_predictions_per_seq}")
    if data.max_seq_length > config.max_position_embeddings:
        raise ConfigError(f"{where} holds sequences of up to {data.max_seq_length} tokens but the model has "
                          f"max_position_embeddings={config.max_position_embeddings}; pass "
                          f"--max_position_embeddings={data.max_seq_length} (or more) to extend its position table")
    largest = data.max_token_id()
    if largest >= config.vocab_size:
        raise ConfigError(f"{where} holds token id {largest} but the model has vocab_size={config.vocab_size}; "
                          "build the data with the model's vocab.txt")
    if tokenizer is None:
        return
    if data.vocab_fingerprint and vocab_fingerprint(tokenizer.vocab) != data.vocab_fingerprint:
        raise ConfigError(f"{where} was built with the vocabulary {data.indexes[0][1]['vocab']['file']}, not with "
                          f"{tokenizer.vocab_file}; pass the --vocab_file the data was built with")
    cased = {index["settings"].get("do_lower_case") for _, index in data.indexes} - {None}
    if cased and cased != {tokenizer.do_lower_case}:
        logger.warning("%s was built with do_lower_case=%s but the tokenizer saved with the model has "
                       "do_lower_case=%s; pass --do_lower_case=%s", where, cased.pop(), tokenizer.do_lower_case,
                       str(not tokenizer.do_lower_case).lower())


@dataclass
class FillMaskParameters:
    # Each candidate carries its decoded sequence: the bound keeps one request's answer small.
    top_k: int = parameter(5, "fillers per [MASK]", ge=1, le=100)


class FillMaskPipeline(TextPipeline):
    """p("Paris is the [MASK] of France.") -> the top_k fillers, as transformers' fill-mask."""

    task = "fill-mask"
    parameters = FillMaskParameters
    warmup_input = "Warm up the [MASK]."
    keep_special_tokens = True

    def default_options(self) -> dict:
        return {"top_k": 5}

    def parse(self, texts=None, **kwargs) -> tuple[bool, list]:
        single, items = super().parse(texts, **kwargs)
        for i, text in enumerate(items):
            if "[MASK]" not in text:
                raise ConfigError(f"input {i} has no [MASK] token to fill: {text[:60]!r}")
        return single, items

    def preprocess(self, text, **options) -> list[Feature]:
        feature = self._encode(text)
        positions = [i for i, t in enumerate(feature.input_ids) if t == self.tokenizer.mask_token_id]
        if not positions:
            raise ConfigError(f"every [MASK] of {text[:60]!r} lies beyond max_seq_length={self.max_seq_length}")
        feature.meta = positions
        return [feature]

    def _outputs(self, batch, features) -> list:
        width = max(len(f.meta) for f in features)
        positions = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            positions[r, :len(f.meta)] = torch.as_tensor(f.meta)
        logits = self.model(**batch, masked_lm_positions=positions.to(self.device)).prediction_logits
        logits = logits.float().cpu().numpy()
        return [row[:len(f.meta)] for row, f in zip(logits, features)]

    def postprocess(self, text, features, outputs, top_k=5, **options):
        feature = features[0]
        results = []
        for m, logits in enumerate(outputs[0]):
            probabilities = softmax_rows(logits)
            best = np.argsort(-probabilities, kind="stable")[:top_k]
            candidates = []
            for token_id in best:
                token = self.tokenizer.inv_vocab[int(token_id)]
                filled = list(feature.input_ids)
                filled[feature.meta[m]] = int(token_id)
                candidates.append({"score": float(probabilities[token_id]), "token": int(token_id),
                                   "token_str": token, "sequence": _decode(self.tokenizer, filled)})
            results.append(candidates)
        return results[0] if len(results) == 1 else results


def _decode(tokenizer: FullTokenizer, ids: list[int]) -> str:
    """Word pieces back to text, without [CLS]/[SEP]/[PAD] (transformers' decode with
    skip_special_tokens): "##" pieces join their word, punctuation keeps the spaces it had."""
    skip = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    text = " ".join(tokenizer.inv_vocab[i] for i in ids if i not in skip)
    text = text.replace(" ##", "")
    for mark in (".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"):
        text = text.replace(f" {mark}", mark)
    return text

