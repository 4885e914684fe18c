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

import os

from bertkit.cli.common import (add_model_arguments, add_training_arguments, load_model, load_tokenizer,
                                model_overrides, training_arguments)
from bertkit.data.glue import get_processor
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from bertkit.tasks.classifier import ClassifierTask, run_classifier


def add_arguments(parser) -> None:
    parser.add_argument("--task_name", required=True, help="MRPC, CoLA, SST-2, STS-B, RTE, WNLI, QQP, MNLI, MNLI-MM, QNLI")
    parser.add_argument("--data_dir", required=True, help="the task's GLUE folder (train.tsv, dev.tsv, test.tsv)")
    parser.add_argument("--max_train_examples", type=int, default=None, help="train on the first N examples only")
    add_model_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5)


def run(args) -> int:
    if not (args.do_train or args.do_eval or args.do_predict):
        raise ConfigError("at least one of --do_train, --do_eval or --do_predict must be true")
    processor = get_processor(args.task_name)  # an unknown task fails before the model loads
    training = training_arguments(args)
    labels = processor.get_labels()
    model = load_model(args, BertForSequenceClassification, num_labels=processor.num_labels,
                       **({"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
                          if labels else {}),
                       **model_overrides(args))
    tokenizer = load_tokenizer(args, model.config)
    task = ClassifierTask(task_name=args.task_name, data_dir=args.data_dir, max_seq_length=args.max_seq_length,
                          do_train=args.do_train, do_eval=args.do_eval, do_predict=args.do_predict,
                          cache_dir=None if args.cache_dir.lower() == "none" else args.cache_dir,
                          max_train_examples=args.max_train_examples)
    results = run_classifier(model, tokenizer, str(tokenizer.vocab_file), task, training, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one copy of the results is enough
        for key in sorted(results):
            print(f"{key} = {results[key]}")
    return 0
