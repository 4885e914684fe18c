"""Fine-tune and evaluate BERT on a GLUE-style task, with Google's run_classifier.py flags.

    bertkit run_classifier --task_name=MRPC --do_train=true --do_eval=true \\
        --data_dir=$GLUE_DIR/MRPC --vocab_file=$BERT_BASE_DIR/vocab.txt \\
        --bert_config_file=$BERT_BASE_DIR/bert_config.json --init_checkpoint=$BERT_BASE_DIR/bert_model.ckpt \\
        --max_seq_length=128 --train_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3.0 \\
        --output_dir=/tmp/mrpc_output/

--init_checkpoint may also be an HF directory; without it (and with --bert_config_file) the model
trains from scratch. Run the same command under `torchrun --nproc_per_node=N` for data parallelism.
"""

from __future__ import annotations

from bertkit.cli.common import (add_model_arguments, add_training_arguments, cache_dir, task_from_args, train_task,
                                training_arguments)
from bertkit.cli.main import positive_int
from bertkit.tasks.classifier import ClassifierTask


def add_arguments(parser) -> None:
    parser.add_argument("--task_name", required=True, help="MRPC, CoLA, SST-2, STS-B, RTE, WNLI, QQP, MNLI, MNLI-MM, QNLI")
    parser.add_argument("--data_dir", required=True, help="the task's GLUE folder (train.tsv, dev.tsv, test.tsv)")
    parser.add_argument("--max_train_examples", type=positive_int, default=None,
                        help="train on the first N examples only")
    add_model_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5, feature_cache=True)


def run(args) -> int:
    task = task_from_args(ClassifierTask, args, cache_dir=cache_dir(args))
    processor = task.processor
    labels = processor.get_labels()
    train_task(args, task, training_arguments(args), num_labels=processor.num_labels,
               **({"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
                  if labels else {}))
    return 0
