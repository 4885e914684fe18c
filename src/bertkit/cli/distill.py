"""Distil a fine-tuned GLUE classifier into a smaller student (Hinton et al.; DistilBERT).

    bertkit distill --teacher=/tmp/mrpc_output --task_name=MRPC --data_dir=$GLUE_DIR/MRPC \\
        --student_layers=every_other --temperature=2 --alpha=0.5 \\
        --do_train=true --do_eval=true --num_train_epochs=3 --output_dir=/tmp/mrpc_student

The student is cut from the teacher (--student_layers: every_other, 0,2,4, bottom:N, top:N or
uniform:N; embeddings, those layers, pooler and classifier are copied), built from
--student_config (a config.json of any width, randomly initialised; --hidden_weight then trains a
projection to the teacher's width), or given as --student (a saved model, e.g. a pruned one).
loss = alpha * T^2 * KL(teacher || student) + (1 - alpha) * cross-entropy (MSE for STS-B).
--teacher_cache_dir stores the teacher's logits so that it runs once. --transfer_set adds inputs that
only the teacher labels (swapped pairs, masked copies, another task's inputs; data/transfer.py).
Data, evaluation and outputs are run_classifier's; the student is saved in --output_dir.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bertkit.cli.common import (ModelSource, add_task_arguments, add_training_arguments, cache_dir, is_main_process,
                                load_tokenizer, print_results, task_from_args, training_arguments)
from bertkit.cli.main import str2bool
from bertkit.compress.distill import DistillationArguments
from bertkit.compress.layerdrop import set_layerdrop
from bertkit.compress.student import student_from_teacher
from bertkit.data.transfer import parse_transfer_set
from bertkit.config import BertConfig
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification
from bertkit.io_utils import atomic_write
from bertkit.tasks.classifier import ClassifierTask, distill_classifier
from bertkit.training import set_seed

logger = logging.getLogger("bertkit")


def add_arguments(parser) -> None:
    parser.add_argument("--teacher", required=True,
                        help="the fine-tuned teacher: an HF directory or a Google checkpoint of this task")
    add_task_arguments(parser, ClassifierTask, required=("task_name", "data_dir"))
    group = parser.add_argument_group("student and distillation")
    group.add_argument("--student_layers", default="every_other",
                       help="teacher layers the student keeps: every_other (default), 0,2,4, bottom:N, top:N, uniform:N")
    group.add_argument("--student_config", default=None,
                       help="config.json of a randomly initialised student instead (any depth and width)")
    group.add_argument("--student", default=None,
                       help="an existing model as the student instead, e.g. one from `bertkit prune` (the "
                            "teacher then recovers what pruning lost)")
    group.add_argument("--temperature", type=float, default=2.0, help="softmax temperature T (default 2)")
    group.add_argument("--alpha", type=float, default=0.5,
                       help="weight of the soft loss; 1 - alpha goes to the labels (default 0.5)")
    group.add_argument("--hidden_weight", type=float, default=0.0, help="weight of the hidden-state MSE (default 0)")
    group.add_argument("--attention_weight", type=float, default=0.0, help="weight of the attention MSE (default 0)")
    group.add_argument("--layer_map", default=None,
                       help="student:teacher hidden-state positions for those losses, e.g. 0:0,1:2,2:4 "
                            "(0 = embeddings; default: the layers the student was copied from)")
    group.add_argument("--transfer_set", default="none",
                       help="more inputs for the teacher to label: swap (pairs with their texts exchanged), mask:K "
                            "(K copies with 10%% of words masked), TASK=DIR (another GLUE task's training inputs); "
                            "comma-separated, e.g. swap,mask:4,STS-B=glue/STS-B (default none)")
    group.add_argument("--teacher_cache_dir", default="none",
                       help="cache the teacher's logits here, keyed by data and teacher ('none': run the teacher)")
    group.add_argument("--vocab_file", help="vocab.txt (default: the one beside the teacher)")
    group.add_argument("--do_lower_case", type=str2bool, default=None, metavar="BOOL",
                       help="lower-case the input (default: tokenizer_config.json, else true)")
    add_training_arguments(parser, ClassifierTask, feature_cache=True)


def parse_layer_map(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        return {int(a): int(b) for a, b in (pair.split(":") for pair in text.split(","))}
    except ValueError:
        raise ConfigError(f"--layer_map {text!r}: write student:teacher pairs, e.g. 0:0,1:2,2:4") from None


def run(args) -> int:
    task = task_from_args(ClassifierTask, args, cache_dir=cache_dir(args))  # bad flags fail before any loading
    if args.reinit or args.reinit_top_layers or args.max_position_embeddings:
        raise ConfigError("--reinit, --reinit_top_layers and --max_position_embeddings are run_classifier's; "
                          "distill copies the teacher's layers as they are")
    processor = task.processor
    transfer_set = parse_transfer_set(args.transfer_set)
    training = training_arguments(args)
    distill_args = DistillationArguments(
        temperature=args.temperature, alpha=args.alpha, hidden_weight=args.hidden_weight,
        attention_weight=args.attention_weight, layer_map=parse_layer_map(args.layer_map),
        teacher_cache_dir=None if args.teacher_cache_dir.lower() == "none" else args.teacher_cache_dir)
    set_seed(args.seed)  # before the student is built: the seed decides a --student_config student's init
    teacher = BertForSequenceClassification.from_pretrained(args.teacher)
    untrained = [n for n in teacher.load_report.missing if n.startswith("classifier.")]
    if untrained:
        raise ConfigError(f"{args.teacher} has no trained classifier ({', '.join(untrained)} missing): the teacher "
                          f"must be fine-tuned on {args.task_name} first (bertkit run_classifier)")
    if teacher.config.num_labels != processor.num_labels:
        raise ConfigError(f"{args.teacher} has {teacher.config.num_labels} labels but {args.task_name} has "
                          f"{processor.num_labels}: give a teacher fine-tuned on {args.task_name}")
    if args.student and args.student_config:
        raise ConfigError("give --student or --student_config, not both")
    if args.student:
        student = BertForSequenceClassification.from_pretrained(args.student)
        if student.config.num_labels != teacher.config.num_labels:
            raise ConfigError(f"{args.student} has {student.config.num_labels} labels but the teacher has "
                              f"{teacher.config.num_labels}: give a student made for {args.task_name}")
        logger.info("student: %s (%s parameters)", args.student, f"{student.num_parameters():,}")
    elif args.student_config:
        config = BertConfig.from_json_file(args.student_config, num_labels=teacher.config.num_labels,
                                           id2label=teacher.config.id2label, label2id=teacher.config.label2id)
        if config.vocab_size != teacher.config.vocab_size:
            raise ConfigError(f"{args.student_config}: vocab_size {config.vocab_size} differs from the teacher's "
                              f"{teacher.config.vocab_size}; the student reads the teacher's word pieces")
        student = BertForSequenceClassification(config)
        logger.info("student: %d layers, hidden size %d, randomly initialised", config.num_hidden_layers,
                    config.hidden_size)
    else:
        student = student_from_teacher(teacher, args.student_layers)
        logger.info("%s", student.load_report.summary())
    if args.layerdrop:
        set_layerdrop(student, args.layerdrop)
    # The tokenizer belongs to the teacher.
    tokenizer = load_tokenizer(ModelSource.of(args.teacher, vocab_file=args.vocab_file,
                                              do_lower_case=args.do_lower_case), teacher.config)
    teacher_parameters = teacher.num_parameters()
    results = distill_classifier(teacher, student, tokenizer, task, training, distill_args, resume=args.resume,
                                 transfer_set=transfer_set)
    if is_main_process():
        record = {"teacher": str(args.teacher), "student": args.student,
                  "student_layers": student.config.kept_layers,
                  "student_config": args.student_config, "teacher_parameters": teacher_parameters,
                  "student_parameters": student.num_parameters(), "temperature": args.temperature,
                  "alpha": args.alpha, "hidden_weight": args.hidden_weight,
                  "attention_weight": args.attention_weight, "layerdrop": args.layerdrop,
                  "transfer_set": args.transfer_set, "results": results}
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        with atomic_write(Path(args.output_dir) / "distillation.json") as handle:
            json.dump(record, handle, indent=2, default=str)
    print_results(results)
    return 0
