"""Fine-tune and evaluate BERT on a multiple-choice task: SWAG (CSV) or CommonsenseQA (JSONL).

    bertkit run_multiple_choice --task=commonsenseqa --do_train=true --do_eval=true \\
        --data_dir=$DATA/commonsenseqa --max_seq_length=64 --train_batch_size=16 \\
        --learning_rate=5e-5 --num_train_epochs=3.0 --output_dir=/tmp/csqa_output/

--data_dir holds the task's files: SWAG's train.csv, val.csv, test.csv, or CommonsenseQA's
train_rand_split.jsonl, dev_rand_split.jsonl, test_rand_split_no_answers.jsonl. Without
--init_checkpoint the packaged all-MiniLM-L6-v2 is fine-tuned; with only --bert_config_file
(and --vocab_file) the model trains from scratch. Writes eval_results.txt, eval_predictions.jsonl
(--do_eval) and test_predictions.jsonl (--do_predict) to --output_dir. Features are built on
every run (they take seconds), so there is no --cache_dir.
"""

from __future__ import annotations

from bertkit.cli.common import (add_model_arguments, add_task_arguments, add_training_arguments, task_from_args,
                                train_task, training_arguments)
from bertkit.tasks.multiple_choice import MultipleChoiceTask


def add_arguments(parser) -> None:
    add_task_arguments(parser, MultipleChoiceTask)
    add_model_arguments(parser)
    add_training_arguments(parser, MultipleChoiceTask)


def run(args) -> int:
    task = task_from_args(MultipleChoiceTask, args)
    train_task(args, task, training_arguments(args))
    return 0
