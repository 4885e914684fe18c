"""Fine-tune BERT on SQuAD v1.1 / v2.0 and predict answers, with Google's run_squad.py flags.

    bertkit run_squad --do_train=true --train_file=$SQUAD_DIR/train-v1.1.json \\
        --do_predict=true --predict_file=$SQUAD_DIR/dev-v1.1.json \\
        --train_batch_size=12 --learning_rate=3e-5 --num_train_epochs=2.0 \\
        --max_seq_length=384 --doc_stride=128 --output_dir=/tmp/squad_base/

Held-out evaluation on the articles of a single file (train on the first N, predict the rest):

    bertkit run_squad --train_file=dev-v1.1.json --split_articles=38 --do_train --do_predict \\
        --output_dir=/tmp/squad_split/

Writes predictions.json and nbest_predictions.json (and null_odds.json with
--version_2_with_negative) to --output_dir and, when the predicted questions have gold answers,
eval_results.txt with the official exact_match and f1. Without --init_checkpoint the packaged
all-MiniLM-L6-v2 is fine-tuned. --predict_batch_size is the batch size of prediction;
--do_eval means --do_predict here. Features are built on every run (no --cache_dir).
"""

from __future__ import annotations

import dataclasses
import logging

from bertkit.cli.common import (add_model_arguments, add_task_arguments, add_training_arguments, task_from_args,
                                train_task, training_arguments)
from bertkit.cli.main import str2bool
from bertkit.tasks.squad import GOOGLE, SquadTask


def add_arguments(parser) -> None:
    sections = add_task_arguments(parser, SquadTask)
    sections[GOOGLE].add_argument("--verbose_logging", type=str2bool, nargs="?", const=True, default=False,
                                  metavar="BOOL", help="log why a prediction could not be mapped back onto the text")
    add_model_arguments(parser)
    add_training_arguments(parser, SquadTask)


def run(args) -> int:
    task = task_from_args(SquadTask, args, do_predict=args.do_predict or args.do_eval)
    if args.verbose_logging:
        logging.getLogger("bertkit.data.squad").setLevel(logging.DEBUG)
    training = dataclasses.replace(training_arguments(args), eval_batch_size=args.predict_batch_size)
    train_task(args, task, training)
    return 0
