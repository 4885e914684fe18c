"""What every task runner shares: recording the task in the model's config before it is saved."""

from __future__ import annotations

from bertkit.config import BertConfig


def record_task(config: BertConfig, task: str, max_seq_length: int, tokenizer, **extra) -> None:
    """Put into `config` what `pipeline(saved_dir)` needs to predict with the model it describes.

    HF's keys where HF has them: `finetuning_task`, and `id2label`/`label2id` (HF's default
    `LABEL_i` names for a head without named classes, as transformers writes them, so that
    transformers' own pipeline reads the labels too). Beside them, bertkit's: `max_seq_length`
    and `do_lower_case` (the inputs the model was trained on), and what `extra` adds (NER's
    `label_scheme`, SQuAD's `doc_stride`).
    """
    if config.id2label is None:
        config.id2label = {i: f"LABEL_{i}" for i in range(config.num_labels)}
        config.label2id = {label: i for i, label in config.id2label.items()}
    config.extra.update({"finetuning_task": task, "max_seq_length": int(max_seq_length),
                         "do_lower_case": bool(tokenizer.do_lower_case), **extra})
