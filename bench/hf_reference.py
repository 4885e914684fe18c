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
                output_dir: str | Path | None = None) -> dict:
    """Fine-tune and evaluate on dev. padding: "max_length" (every batch padded to max_seq_length,
    as Google's script), "dynamic" (transformers' default: random batches padded to their longest
    row) or "group_by_length" (dynamic padding, length-grouped batches).

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
    steps = math.ceil(len(train) / batch_size) * num_train_epochs
    with tempfile.TemporaryDirectory() as scratch:
        args = transformers.TrainingArguments(
            output_dir=str(output_dir or scratch), learning_rate=learning_rate, num_train_epochs=num_train_epochs,
            per_device_train_batch_size=batch_size, per_device_eval_batch_size=64, seed=seed,
            warmup_steps=int(steps * warmup_proportion), weight_decay=0.01, adam_epsilon=1e-6,
            lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
            logging_strategy="no", disable_tqdm=True,
            train_sampling_strategy="group_by_length" if padding == "group_by_length" else "random",
        )
        collator = transformers.DataCollatorWithPadding(tokenizer)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        output = trainer.predict(dev)
    logits = output.predictions
    preds = logits.squeeze(-1) if is_regression else np.argmax(logits, axis=-1)
    metrics = glue_compute_metrics(task_name, preds, np.array([row["labels"] for row in dev]))
    return {**metrics, "train_seconds": train_seconds, "torch_threads": torch.get_num_threads()}
