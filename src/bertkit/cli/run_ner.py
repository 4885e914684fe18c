"""Fine-tune and evaluate BERT on named-entity recognition (token classification): CoNLL-2003, or your own files.

    bertkit run_ner --data_dir=../shared/data/conll2003 --do_train=true --do_eval=true --do_predict=true \\
        --max_seq_length=128 --train_batch_size=32 --learning_rate=5e-5 --num_train_epochs=3.0 \\
        --output_dir=/tmp/conll2003_output/

The data directory holds eng.train, eng.testa (evaluated with --do_eval) and eng.testb (with
--do_predict); --train_file/--eval_file/--test_file name other CoNLL column files, 4-column
`token POS chunk NER` or 2-column `token label`, IOB1 or IOB2 tags. The label list comes from the
training file and is stored in the model's config.json (id2label); evaluating a fine-tuned model
without --do_train uses the labels in its config. Sentences longer than --max_seq_length are split
into overlapping windows, never truncated. Results: eval_results.txt / test_results.txt,
<prefix>_results.json, <prefix>_per_type.txt and predictions_dev.txt / predictions_test.txt
(`word gold pred` columns). Features are built in seconds and are not cached (no --cache_dir).

Your own files: CoNLL columns (one word, or one Chinese character, per line) or JSONL as
transformers' datasets hold NER (`{"tokens": [...], "ner_tags": [...]}`, tags as strings, or
integers named by --label_list), told apart by the extension (.jsonl/.json) or --file_format:

    bertkit run_ner --train_file=train.jsonl --eval_file=dev.jsonl --do_train=true --do_eval=true \
        --label_list=O,B-PER,I-PER,B-ORG,I-ORG,B-LOC,I-LOC,B-MISC,I-MISC --output_dir=/tmp/ner_output/

The tag scheme (IOB1, IOB2 or BIOES) is detected from the training file and recorded in
config.json (`label_scheme`; IOB1 is learnt as IOB2), and the pipeline decodes entities with it.
A model trained on one character per line records `word_unit: char`, and `predict` / `serve`
cut raw text into characters the same way.

--init_checkpoint defaults to the packaged all-MiniLM-L6-v2; with only --bert_config_file the
model trains from scratch. Run under `torchrun --nproc_per_node=N` for data parallelism.
"""

from __future__ import annotations

from bertkit.cli.common import (ModelSource, add_model_arguments, add_task_arguments, add_training_arguments,
                                task_from_args, train_task, training_arguments)
from bertkit.config import BertConfig
from bertkit.tasks.ner import NerTask, training_labels, use_model_labels


def _column(value: str) -> int | str:
    """A column number for CoNLL files, a key name for JSONL."""
    try:
        return int(value)
    except ValueError:
        return value


def add_arguments(parser) -> None:
    add_task_arguments(parser, NerTask, parsers={"label_column": _column})
    add_model_arguments(parser)
    add_training_arguments(parser, NerTask)


def run(args) -> int:
    # --label_list names the file's integer tags (tag_names); NerTask.label_list is the model's, set below.
    task = task_from_args(NerTask, args)
    training = training_arguments(args)
    # Training takes the labels from the training file; evaluating a fine-tuned model, from its config.
    config_file = None if args.do_train else ModelSource.from_args(args).config_path
    if not (config_file and use_model_labels(task, BertConfig.from_json_file(config_file))):
        task.label_list = training_labels(task)
    train_task(args, task, training, num_labels=len(task.label_list), id2label=dict(enumerate(task.label_list)),
               label2id={label: i for i, label in enumerate(task.label_list)})
    return 0
