"""The reference run: the same GLUE fine-tuning through transformers' Trainer.

Used by bench/bench_finetune.py (wall time) and tools/glue_results.py (accuracy parity). The
examples come from bertkit's GLUE processors, so both sides train on identical rows; the
tokenizer is transformers' own fast BertTokenizer, as a transformers user would run it.
Needs `pip install transformers accelerate`.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np


def run_hf_glue(task_name: str, data_dir: str | Path, model_dir: str | Path, *, seed: int = 42,
                learning_rate: float = 2e-5, num_train_epochs: float = 3.0, batch_size: int = 32,
                max_seq_length: int = 128, padding: str = "max_length", warmup_proportion: float = 0.1,
                output_dir: str | Path | None = None, schedule: str = "google") -> dict:
    """Fine-tune and evaluate on dev. padding: "max_length" (every batch padded to max_seq_length,
    as Google's script), "dynamic" (transformers' default: random batches padded to their longest
    row) or "group_by_length" (dynamic padding, length-grouped batches). schedule: "google" (as
    bertkit's default) or "transformers" (its own linear decay).

    Returns the dev metrics plus `train_seconds` (the Trainer's train() call only).
    """
    import torch
    import transformers

    from bertkit.data.glue import get_processor
    from bertkit.training.metrics import glue_compute_metrics

    if padding not in ("max_length", "dynamic", "group_by_length"):
        raise ValueError(f"padding {padding!r}: use max_length, dynamic or group_by_length")
    transformers.logging.set_verbosity_error()
    transformers.set_seed(seed)
    processor = get_processor(task_name)
    labels = processor.get_labels()
    is_regression = processor.is_regression
    tokenizer = transformers.BertTokenizer.from_pretrained(str(model_dir))
    model = transformers.BertForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=1 if is_regression else len(labels))

    def encode(examples):
        rows = []
        for example in examples:
            features = tokenizer(example.text_a, example.text_b, truncation=True, max_length=max_seq_length,
                                 padding="max_length" if padding == "max_length" else False)
            label = float(example.label) if is_regression else labels.index(example.label)
            rows.append({**features, "labels": label})
        return rows

    train = encode(processor.get_train_examples(str(data_dir)))
    dev = encode(processor.get_dev_examples(str(data_dir)))
    with tempfile.TemporaryDirectory() as scratch:
        trainer, train_seconds = _train_hf(
            model, train, seed=seed, learning_rate=learning_rate, num_train_epochs=num_train_epochs,
            batch_size=batch_size, warmup_proportion=warmup_proportion, output_dir=str(output_dir or scratch),
            collator=transformers.DataCollatorWithPadding(tokenizer),
            sampling="group_by_length" if padding == "group_by_length" else "random", schedule=schedule)
        output = trainer.predict(dev)
    logits = output.predictions
    preds = logits.squeeze(-1) if is_regression else np.argmax(logits, axis=-1)
    metrics = glue_compute_metrics(task_name, preds, np.array([row["labels"] for row in dev]))
    return {**metrics, "train_seconds": train_seconds, "torch_threads": torch.get_num_threads()}


def google_linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Google's optimization.py, transcribed: lr·step/warmup during warmup, then lr·(1 - step/total).

    transformers' "linear" decays from the end of warmup instead, (total - step)/(total - warmup),
    which gives a higher rate all the way down: about 10% more summed learning rate over a run
    with 10% warmup.
    """
    import torch

    def multiplier(step: int) -> float:
        return step / max(1, warmup_steps) if step < warmup_steps else max(0.0, 1.0 - step / max(1, total_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def _train_hf(model, train_rows, *, seed: int, learning_rate: float, num_train_epochs: float, batch_size: int,
              warmup_proportion: float, output_dir: str, collator=None, sampling: str = "random",
              schedule: str = "google"):
    """Train with transformers' Trainer and Google's recipe (warmup, then linear decay; weight decay
    0.01, eps 1e-6). `schedule="transformers"` swaps Google's decay for transformers' own linear
    one. `collator` defaults to bertkit's, for rows that bertkit built, so that both sides see the
    same batches' contents; the sampling is transformers' own. Returns the trainer and the seconds
    train() took."""
    import transformers

    from bertkit.data.batching import PaddingCollator

    if schedule not in ("google", "transformers"):
        raise ValueError(f"schedule {schedule!r}: use google or transformers")

    class GoogleScheduleTrainer(transformers.Trainer):
        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = google_linear_schedule(optimizer or self.optimizer,
                                                           self.args.get_warmup_steps(num_training_steps),
                                                           num_training_steps)
            return self.lr_scheduler

    steps = math.ceil(len(train_rows) / batch_size) * num_train_epochs
    args = transformers.TrainingArguments(
        output_dir=output_dir, learning_rate=learning_rate, num_train_epochs=num_train_epochs,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=64, seed=seed,
        warmup_steps=int(steps * warmup_proportion), weight_decay=0.01, adam_epsilon=1e-6, lr_scheduler_type="linear",
        save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True, logging_strategy="no", disable_tqdm=True,
        train_sampling_strategy=sampling)
    trainer_class = GoogleScheduleTrainer if schedule == "google" else transformers.Trainer
    trainer = trainer_class(model=model, args=args, train_dataset=train_rows,
                            data_collator=collator or PaddingCollator())
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def run_hf_squad(train_file: str | Path, model_dir: str | Path, *, split_articles: int = 38, seed: int = 42,
                 learning_rate: float = 5e-5, num_train_epochs: float = 2.0, batch_size: int = 32,
                 max_seq_length: int = 384, doc_stride: int = 128, max_query_length: int = 64,
                 warmup_proportion: float = 0.1, max_train_examples: int | None = None) -> dict:
    """transformers' BertForQuestionAnswering trained on the first `split_articles` articles of
    `train_file` and scored on the rest: bertkit's doc-stride windows in, bertkit's n-best decoding
    and the official EM/F1 out, so that the model and its training are what is compared."""
    import transformers

    from bertkit.data.squad import collect_raw_results, convert_examples_to_features
    from bertkit.tasks.squad import SquadTask, load_data, write_outputs
    from bertkit.tokenization import FullTokenizer

    transformers.logging.set_verbosity_error()
    transformers.set_seed(seed)
    task = SquadTask(train_file=str(train_file), do_train=True, do_predict=True, max_seq_length=max_seq_length,
                     doc_stride=doc_stride, max_query_length=max_query_length, split_articles=split_articles,
                     max_train_examples=max_train_examples)
    data = load_data(task)
    tokenizer = FullTokenizer.from_pretrained(Path(model_dir) / "vocab.txt")
    convert = dict(tokenizer=tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
                   max_query_length=max_query_length)
    train_features = convert_examples_to_features(data.train_examples, is_training=True, **convert)
    train_rows = [f.model_inputs() for f in train_features]
    eval_features = convert_examples_to_features(data.eval_examples, is_training=False, **convert)
    model = transformers.BertForQuestionAnswering.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory() as scratch:
        trainer, train_seconds = _train_hf(model, train_rows, seed=seed, learning_rate=learning_rate,
                                           num_train_epochs=num_train_epochs, batch_size=batch_size,
                                           warmup_proportion=warmup_proportion, output_dir=scratch)
        start_logits, end_logits = trainer.predict([f.model_inputs() for f in eval_features]).predictions
        scores = write_outputs(Path(scratch), task, data, eval_features,
                               collect_raw_results(eval_features, start_logits, end_logits),
                               tokenizer.do_lower_case, trainer.state.global_step)
    return {**scores, "train_seconds": train_seconds}


def run_hf_multiple_choice(task_name: str, data_dir: str | Path, model_dir: str | Path, *, seed: int = 42,
                           learning_rate: float = 5e-5, num_train_epochs: float = 3.0, batch_size: int = 16,
                           max_seq_length: int = 64, warmup_proportion: float = 0.1,
                           max_train_examples: int | None = None) -> dict:
    """transformers' BertForMultipleChoice on bertkit's [choices, seq] features; dev accuracy."""
    import transformers

    from bertkit.data.multiple_choice import get_processor
    from bertkit.tasks.multiple_choice import MultipleChoiceTask, build_dataset
    from bertkit.tokenization import FullTokenizer

    transformers.logging.set_verbosity_error()
    transformers.set_seed(seed)
    processor = get_processor(task_name)
    task = MultipleChoiceTask(task_name, str(data_dir), max_seq_length, do_train=True, do_eval=True,
                              max_train_examples=max_train_examples)
    tokenizer = FullTokenizer.from_pretrained(Path(model_dir) / "vocab.txt")
    _, train = build_dataset(processor, task, "train", tokenizer, False)
    _, dev = build_dataset(processor, task, "dev", tokenizer, False)
    model = transformers.BertForMultipleChoice.from_pretrained(str(model_dir))
    with tempfile.TemporaryDirectory() as scratch:
        trainer, train_seconds = _train_hf(model, train, seed=seed, learning_rate=learning_rate,
                                           num_train_epochs=num_train_epochs, batch_size=batch_size,
                                           warmup_proportion=warmup_proportion, output_dir=scratch)
        output = trainer.predict(dev)
    accuracy = float((np.argmax(output.predictions, axis=-1) == output.label_ids).mean())
    return {"accuracy": accuracy, "train_seconds": train_seconds}


def run_hf_ner(data_dir: str | Path, model_dir: str | Path, *, seed: int = 42, learning_rate: float = 5e-5,
               num_train_epochs: float = 3.0, batch_size: int = 32, max_seq_length: int = 128,
               warmup_proportion: float = 0.1, max_train_examples: int | None = None,
               max_eval_examples: int | None = None) -> dict:
    """transformers' BertForTokenClassification on bertkit's CoNLL window features (each word's
    label on its first piece), its predictions aligned back to words as run_ner does and scored
    by the same seqeval metric: {"testa": ..., "testb": ...} in run_ner's eval_results.json form, as
    task_results records bertkit's runs."""
    import transformers

    from bertkit.tasks.ner import NerTask, entity_types_of, summarize, training_labels
    from bertkit.tokenization import FullTokenizer

    transformers.logging.set_verbosity_error()
    transformers.set_seed(seed)
    task = NerTask(data_dir=str(data_dir), max_seq_length=max_seq_length, do_train=True, do_eval=True,
                   do_predict=True, max_train_examples=max_train_examples, max_eval_examples=max_eval_examples)
    task.label_list = training_labels(task)
    tokenizer = FullTokenizer.from_pretrained(Path(model_dir) / "vocab.txt")
    train = task.dataset("train", tokenizer, None).dataset
    model = transformers.BertForTokenClassification.from_pretrained(
        str(model_dir), num_labels=len(task.label_list), id2label=dict(enumerate(task.label_list)),
        label2id={label: i for i, label in enumerate(task.label_list)})
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        trainer, train_seconds = _train_hf(model, train, seed=seed, learning_rate=learning_rate,
                                           num_train_epochs=num_train_epochs, batch_size=batch_size,
                                           warmup_proportion=warmup_proportion, output_dir=scratch)
        for split, name in (("dev", "testa"), ("test", "testb")):
            data = task.dataset(split, tokenizer, None)
            logits = trainer.predict(data.dataset).predictions  # (windows, T, labels)
            results[name] = summarize(task.metrics(data, logits.argmax(axis=-1)), entity_types_of(task.label_list),
                                      task.path(split), trainer.state.global_step)
    return {**results, "train_seconds": train_seconds}
