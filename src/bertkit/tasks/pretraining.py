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

import dataclasses
import functools
import logging
from dataclasses import dataclass

import numpy as np
import torch

from bertkit.data.pretraining import PretrainingDataset, expand_shard_dirs, load_index, vocab_fingerprint
from bertkit.errors import ConfigError
from bertkit.heads import BertForPreTraining, PreTrainingOutput
from bertkit.tasks.base import record_task
from bertkit.training.trainer import Trainer, TrainingArguments

logger = logging.getLogger("bertkit")

# Batch keys collected for compute_metrics, in this order (input_ids: what each masked position showed).
PRETRAINING_LABELS = ("labels", "next_sentence_label", "masked_lm_positions", "input_ids")
BEYOND = 512  # masked_lm_accuracy_beyond_512: positions the original BERT position table does not have


@dataclass
class PretrainingTask:
    """What run_pretraining needs beyond the model and the training arguments (Google's flag names)."""

    input_file: str | None = None  # create_pretraining_data output folder(s): comma-separated, globs allowed
    eval_input_file: str | None = None  # default: input_file, as Google evaluates on its input
    do_train: bool = False
    do_eval: bool = False
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    max_eval_steps: int = 100  # evaluate the first max_eval_steps * eval_batch_size instances
    next_sentence_weight: float = 1.0  # the NSP loss's weight in the training loss; 0: masked LM only

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


def pretraining_predictions(output: PreTrainingOutput):
    """The Trainer's prediction_fn: the predicted id at each masked position (B, P), the batch's
    mean MLM loss repeated for each of its rows (B,), and the NSP logits (B, 2).

    The per-position losses need the labels, which a prediction_fn does not see; the batch mean,
    weighted back by each row's number of masked positions, gives the exact per-position mean
    over the whole evaluation set (Google's masked_lm_loss).
    """
    predicted = output.prediction_logits.argmax(dim=-1)
    rows = predicted.size(0)
    loss = output.masked_lm_loss
    loss = (loss.detach().float() if loss is not None else torch.tensor(float("nan"), device=predicted.device))
    return predicted, loss.expand(rows), output.seq_relationship_logits


def pretraining_metrics(predictions, labels, beyond: int = BEYOND, mask_token_id: int | None = None
                        ) -> dict[str, float]:
    """Google's run_pretraining metric_fn, plus the MLM accuracy at positions >= `beyond` when there are any.

    Given the input ids and the [MASK] id, also the MLM accuracy by what each masked position showed
    (`masked_lm_accuracy_at_mask`, `_at_random`, `_at_kept`). Only the [MASK] positions measure the
    use of context: a model on the early plateau of pre-training copies the kept tokens (10% of the
    positions) and guesses frequent words elsewhere, which already scores about 13% overall.
    """
    predicted_ids, batch_mlm_loss, nsp_logits = predictions
    mlm_labels, nsp_labels, positions, *inputs = labels
    real = mlm_labels != -100
    counts = real.sum(axis=1)
    total = max(int(counts.sum()), 1)
    correct = (predicted_ids == mlm_labels) & real
    nsp_labels = nsp_labels.reshape(-1)
    logits = nsp_logits.astype(np.float64)
    top = logits.max(axis=1)
    log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
    nsp_loss = log_norm - logits[np.arange(len(logits)), nsp_labels]
    metrics = {
        "masked_lm_accuracy": float(correct.sum() / total),
        "masked_lm_loss": float((batch_mlm_loss.astype(np.float64) * counts).sum() / total),
        "next_sentence_accuracy": float((logits.argmax(axis=1) == nsp_labels).mean()),
        "next_sentence_loss": float(nsp_loss.mean()),
    }
    far = real & (positions >= beyond)
    if far.any():
        metrics[f"masked_lm_accuracy_beyond_{beyond}"] = float(correct[far].sum() / far.sum())
    if inputs and mask_token_id is not None:
        # batches of fewer masked positions were padded with -100 when gathered: point those at 0
        shown = np.take_along_axis(inputs[0], np.maximum(positions, 0).astype(np.int64), axis=1)
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


def run_pretraining(model: BertForPreTraining, tokenizer, task: PretrainingTask, args: TrainingArguments,
                    resume: bool = False) -> dict:
    """Train and/or evaluate; returns the last evaluation's metrics (`eval_masked_lm_accuracy`, ...)."""
    task.validate()
    if tokenizer is not None:
        record_task(model.config, "pretraining", task.max_seq_length, tokenizer)
    model.next_sentence_weight = task.next_sentence_weight
    train_data = eval_data = None
    if task.do_train:
        train_data = PretrainingDataset(task.input_file)
        check_data_fits(train_data, model, tokenizer, task)
        logger.info("***** Running pre-training *****  %d instances (max_seq_length %d), batch size %d, %s",
                    len(train_data), train_data.max_seq_length, args.train_batch_size,
                    f"{args.max_steps} steps" if args.max_steps else f"{args.num_train_epochs} epochs")
    if task.do_eval:
        eval_data = PretrainingDataset(task.eval_input_file or task.input_file,
                                       limit=task.max_eval_steps * args.eval_batch_size)
        check_data_fits(eval_data, model, tokenizer, task)
    args = dataclasses.replace(args, label_names=PRETRAINING_LABELS)
    mask_token_id = tokenizer.vocab.get("[MASK]") if tokenizer is not None else None
    trainer = Trainer(model, args, train_dataset=train_data, eval_dataset=eval_data,
                      compute_metrics=functools.partial(pretraining_metrics, mask_token_id=mask_token_id),
                      prediction_fn=pretraining_predictions, tokenizer=tokenizer)
    results: dict = {}
    if task.do_train:
        results = trainer.train(resume=resume).metrics
    if task.do_eval and not results:
        results = trainer.evaluate()
    return results
