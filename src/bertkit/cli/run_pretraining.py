"""Pre-train BERT (masked LM + next sentence) on create_pretraining_data's shards, with Google's run_pretraining.py flags.

    bertkit run_pretraining --input_file=/tmp/pretraining_128 --output_dir=/tmp/pretraining_output \\
        --do_train=true --do_eval=true --bert_config_file=$BERT_BASE_DIR/bert_config.json \\
        --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \\
        --num_train_steps=20 --num_warmup_steps=10 --learning_rate=2e-5

Without --init_checkpoint the model starts from scratch with --bert_config_file; with it (an HF
folder, or Google's .../bert_model.ckpt) pre-training continues. Phase 2 of the paper's schedule
is a second run: --init_checkpoint=<phase 1's --output_dir> on shards built with the longer
--max_seq_length. --max_position_embeddings=M beyond the checkpoint's extends the position table
(trained rows kept) and evaluation reports masked_lm_accuracy_beyond_512 too. Evaluation also splits
the MLM accuracy by what the masked position showed: masked_lm_accuracy_at_mask (the [MASK]
positions, the only ones that measure the use of context), _at_random and _at_kept.
--next_sentence_weight=0 trains the masked LM alone (NSP is still evaluated): a small model can
learn positional attention first and take NSP on in a second run.

--vocab_file and --do_lower_case default to the checkpoint's, else to the ones the data was built
with. Evaluation reads the first --max_eval_steps batches of --eval_input_file (default: the
training data, as Google's). Under `torchrun --nproc_per_node=N` training is data parallel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bertkit.cli.common import (ModelSource, add_model_arguments, add_task_arguments, add_training_arguments,
                                task_from_args, train_task, training_arguments)
from bertkit.errors import ConfigError
from bertkit.tasks.pretraining import GOOGLE, PretrainingTask


def add_arguments(parser) -> None:
    # Google's names of two training flags (TrainingArguments' --max_steps and --warmup_steps).
    google = add_task_arguments(parser, PretrainingTask)[GOOGLE]
    google.add_argument("--num_train_steps", type=int, default=None,
                        help="optimizer steps (the same as --max_steps; default: --num_train_epochs over the data)")
    google.add_argument("--num_warmup_steps", type=int, default=None, help="the same as --warmup_steps")
    add_model_arguments(parser, default_to_minilm=False)
    add_training_arguments(parser, PretrainingTask, epochs=1.0)


def _merge(args, google: str, ours: str) -> None:
    a, b = getattr(args, google), getattr(args, ours)
    if a is not None and b is not None and a != b:
        raise ConfigError(f"--{google}={a} and --{ours}={b} mean the same thing; give one of them")
    setattr(args, ours, b if b is not None else a)


def run(args) -> int:
    _merge(args, "num_train_steps", "max_steps")
    _merge(args, "num_warmup_steps", "warmup_steps")
    task = task_from_args(PretrainingTask, args)
    source = ModelSource.from_args(args)
    if source.vocab_file is None:
        # From scratch (or a checkpoint without a vocab.txt): the vocabulary and casing the data was built with.
        index = task.data_index()
        lower = source.do_lower_case if source.do_lower_case is not None else index["settings"].get("do_lower_case")
        source = dataclasses.replace(source, vocab_file=Path(index["vocab"]["file"]), do_lower_case=lower)
    # Google's names: masked_lm_accuracy, next_sentence_loss, ...
    train_task(args, task, training_arguments(args), source,
               name=lambda key: key if key == "eval_loss" else key.removeprefix("eval_"))
    return 0
