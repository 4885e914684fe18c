"""Fine-tune and evaluate BERT on a GLUE-style task, with Google's run_classifier.py flags, or on your own files.

    bertkit run_classifier --task_name=MRPC --do_train=true --do_eval=true \\
        --data_dir=$GLUE_DIR/MRPC --vocab_file=$BERT_BASE_DIR/vocab.txt \\
        --bert_config_file=$BERT_BASE_DIR/bert_config.json --init_checkpoint=$BERT_BASE_DIR/bert_model.ckpt \\
        --max_seq_length=128 --train_batch_size=32 --learning_rate=2e-5 --num_train_epochs=3.0 \\
        --output_dir=/tmp/mrpc_output/

    bertkit run_classifier --train_file train.csv --validation_file dev.csv --do_train --do_eval \\
        --output_dir /tmp/reviews            # text,label columns; see docs/your-data.md

--init_checkpoint may also be an HF directory; without it (and with --bert_config_file) the model
trains from scratch. Run the same command under `torchrun --nproc_per_node=N` for data parallelism.
"""

from __future__ import annotations

from bertkit.cli.common import (ModelSource, add_model_arguments, add_task_arguments, add_training_arguments, cache_dir,
                                task_from_args, train_task, training_arguments)
from bertkit.config import BertConfig
from bertkit.data.tabular import FORMATS, PROBLEM_TYPES, TabularData
from bertkit.errors import ConfigError
from bertkit.tasks.classifier import ClassifierTask
from bertkit.tasks.text_classification import TASK_NAME, FileClassifierTask


def add_arguments(parser) -> None:
    add_task_arguments(parser, ClassifierTask)
    # Your own files: TabularData's arguments (FileClassifierTask takes the data read).
    files = parser.add_argument_group("your own files (instead of --task_name)")
    files.add_argument("--train_file", help="CSV, TSV or JSONL file with a header row (CSV/TSV) of columns")
    files.add_argument("--validation_file", help="the dev split, read as --train_file")
    files.add_argument("--test_file", help="the split --do_predict predicts (its label column is optional)")
    files.add_argument("--file_format", choices=FORMATS, help="default: from the extension (.csv, .tsv, .jsonl)")
    files.add_argument("--text_column", help="default: sentence1 with sentence2 when both exist, else text, else sentence")
    files.add_argument("--text_pair_column", help="the second text of a pair (default: sentence2 with sentence1)")
    files.add_argument("--label_column", default="label", help="default: label")
    files.add_argument("--problem_type", choices=PROBLEM_TYPES,
                       help="default: regression when the labels are numbers with decimals, else single-label")
    files.add_argument("--label_separator", default=",",
                       help="multi-label: the separator of a label string such as 'a,b' (JSON lists need none)")
    files.add_argument("--validation_split_percentage", type=float, default=None,
                       help="no --validation_file: hold out this percentage of --train_file as the dev split "
                            "(shuffled with --seed)")
    add_model_arguments(parser)
    add_training_arguments(parser, ClassifierTask, feature_cache=True)


def run(args) -> int:
    own_files = args.train_file or args.validation_file or args.test_file
    if own_files and args.task_name:
        raise ConfigError("give --task_name with --data_dir (GLUE), or --train_file / --validation_file / "
                          "--test_file (your own files), not both")
    if not own_files and not (args.task_name and args.data_dir):
        raise ConfigError("give --train_file (and --validation_file, --test_file) for your own CSV / TSV / JSONL "
                          "files, or --task_name with --data_dir for a GLUE task")
    if not own_files:  # flags fail before the model loads, and so does an unknown task
        task = task_from_args(ClassifierTask, args, cache_dir=cache_dir(args))
        labels = task.processor.get_labels()
    else:
        task = task_from_args(FileClassifierTask, args, task_name=TASK_NAME, data_dir="", data=file_data(args),
                              cache_dir=cache_dir(args))
        labels = task.label_list
    train_task(args, task, training_arguments(args), num_labels=1 if task.processor.is_regression else len(labels),
               **({"id2label": dict(enumerate(labels)), "label2id": {l: i for i, l in enumerate(labels)}}
                  if labels else {}))
    return 0


def file_data(args) -> TabularData:
    """The files of the flags; without a training file the labels are the fine-tuned model's."""
    labels = problem_type = None
    if not args.train_file:
        source = ModelSource.from_args(args)
        config = BertConfig.from_json_file(source.config_path) if source.config_path else None
        if config is None or not config.id2label:
            raise ConfigError("no --train_file to read the labels from, and the model has none (no id2label in its "
                              "config.json): give --train_file, or --init_checkpoint a model fine-tuned on these labels")
        labels = [config.id2label[i] for i in range(len(config.id2label))]
        problem_type = config.task_metadata.problem_type
    return TabularData(args.train_file, args.validation_file, args.test_file, file_format_override=args.file_format,
                       text_column=args.text_column, text_pair_column=args.text_pair_column,
                       label_column=args.label_column, problem_type=args.problem_type or problem_type,
                       label_separator=args.label_separator, labels=labels,
                       validation_split_percentage=args.validation_split_percentage, seed=args.seed)
