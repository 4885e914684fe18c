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

from bertkit.cli.common import add_model_arguments, add_training_arguments, task_from_args, train_task, training_arguments
from bertkit.cli.main import positive_int, str2bool
from bertkit.tasks.squad import SquadTask


def add_arguments(parser) -> None:
    flag = dict(type=str2bool, nargs="?", const=True, default=False, metavar="BOOL")
    squad = parser.add_argument_group("Google's SQuAD flags")
    squad.add_argument("--train_file", help="SQuAD json for training, e.g. train-v1.1.json")
    squad.add_argument("--predict_file", help="SQuAD json for predictions, e.g. dev-v1.1.json")
    squad.add_argument("--doc_stride", type=int, default=128,
                       help="when splitting a long document into windows, how far apart they start (pieces)")
    squad.add_argument("--max_query_length", type=int, default=64, help="questions are cut to this many pieces")
    squad.add_argument("--n_best_size", type=int, default=20, help="n-best predictions per question in nbest_predictions.json")
    squad.add_argument("--max_answer_length", type=int, default=30, help="the longest answer, in pieces")
    squad.add_argument("--verbose_logging", **flag, help="log why a prediction could not be mapped back onto the text")
    squad.add_argument("--version_2_with_negative", **flag, help="SQuAD 2.0: questions may have no answer")
    squad.add_argument("--null_score_diff_threshold", type=float, default=0.0,
                       help="SQuAD 2.0: predict no answer when null score - best span score exceeds this")
    ours = parser.add_argument_group("bertkit's SQuAD flags")
    ours.add_argument("--split_articles", type=int, default=None, metavar="N",
                      help="train on the first N articles of --train_file and predict on the rest "
                           "(e.g. 38 for dev-v1.1.json's 48 articles)")
    ours.add_argument("--max_train_examples", type=positive_int, default=None,
                      help="train on the first N questions only")
    add_model_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5, epochs=3.0, max_seq_length=384)


def run(args) -> int:
    task = task_from_args(SquadTask, args, do_predict=args.do_predict or args.do_eval)
    if args.verbose_logging:
        logging.getLogger("bertkit.data.squad").setLevel(logging.DEBUG)
    training = dataclasses.replace(training_arguments(args), eval_batch_size=args.predict_batch_size)
    train_task(args, task, training)
    return 0
