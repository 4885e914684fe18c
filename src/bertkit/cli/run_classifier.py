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

from bertkit.cli.common import add_model_arguments, load_model, load_tokenizer
from bertkit.cli.main import str2bool
from bertkit.data.glue import get_processor
from bertkit.heads import BertForSequenceClassification
from bertkit.tasks.classifier import ClassifierTask, default_cache_dir, run_classifier
from bertkit.training.optim import SCHEDULES
from bertkit.training.trainer import TrainingArguments


def add_training_arguments(parser, learning_rate: float = 5e-5, epochs: float = 3.0, max_seq_length: int = 128) -> None:
    """Google's training flags plus bertkit's; shared by every task runner."""
    flag = dict(type=str2bool, nargs="?", const=True, default=False, metavar="BOOL")
    google = parser.add_argument_group("Google's flags")
    google.add_argument("--output_dir", required=True)
    google.add_argument("--do_train", **flag)
    google.add_argument("--do_eval", **flag)
    google.add_argument("--do_predict", **flag)
    google.add_argument("--max_seq_length", type=int, default=max_seq_length)
    google.add_argument("--train_batch_size", type=int, default=32)
    google.add_argument("--eval_batch_size", type=int, default=8)
    google.add_argument("--predict_batch_size", type=int, default=8)
    google.add_argument("--learning_rate", type=float, default=learning_rate)
    google.add_argument("--num_train_epochs", type=float, default=epochs)
    google.add_argument("--warmup_proportion", type=float, default=0.1)
    google.add_argument("--save_checkpoints_steps", type=int, default=1000)
    google.add_argument("--iterations_per_loop", type=int, default=1000, help="accepted for compatibility; unused")
    google.add_argument("--use_tpu", **flag, help="accepted for compatibility; must be false")
    ours = parser.add_argument_group("bertkit's flags")
    ours.add_argument("--reinit_top_layers", type=int, default=0, help="re-initialise the top N encoder layers")
    ours.add_argument("--reinit", default=None, help="comma-separated parameter names or glob patterns to re-initialise")
    ours.add_argument("--max_position_embeddings", type=int, default=None,
                      help="extend the position table past the checkpoint's (trained rows are kept)")
    ours.add_argument("--scheduler", choices=sorted(SCHEDULES), default="linear")
    ours.add_argument("--warmup_steps", type=int, default=None, help="overrides --warmup_proportion")
    ours.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps")
    ours.add_argument("--gradient_accumulation_steps", type=int, default=1)
    ours.add_argument("--google_adam", **flag, help="Google's AdamWeightDecayOptimizer (no bias correction)")
    ours.add_argument("--pad_to_max_length", **flag,
                      help="pad every batch to max_seq_length (Google's exact input shapes); default: dynamic padding")
    ours.add_argument("--group_by_length", type=str2bool, default=True, metavar="BOOL",
                      help="batch examples of similar length together (default true)")
    ours.add_argument("--eval_steps", type=int, default=None, help="evaluate every N steps (default: every epoch)")
    ours.add_argument("--save_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ours.add_argument("--seed", type=int, default=42)
    ours.add_argument("--bf16", **flag, help="bf16 autocast (fast on CPUs with AMX and on GPUs)")
    ours.add_argument("--resume", **flag, help="continue from the newest checkpoint in --output_dir")
    ours.add_argument("--cache_dir", default=str(default_cache_dir()),
                      help="feature cache directory ('none' disables it)")
    ours.add_argument("--no_progress", action="store_true", help="no progress bar (log lines only)")


def training_arguments(args) -> TrainingArguments:
    if args.use_tpu:
        from bertkit.errors import ConfigError

        raise ConfigError("--use_tpu=true is not supported: bertkit runs on CPUs and GPUs")
    return TrainingArguments(
        output_dir=args.output_dir, learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps, train_batch_size=args.train_batch_size, eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, warmup_proportion=args.warmup_proportion,
        warmup_steps=args.warmup_steps, scheduler=args.scheduler, bias_correction=not args.google_adam,
        seed=args.seed, bf16=args.bf16, eval_steps=args.eval_steps, save_checkpoints_steps=args.save_checkpoints_steps,
        save_total_limit=args.save_total_limit, progress=not args.no_progress, group_by_length=args.group_by_length,
        pad_to_max_length=args.pad_to_max_length, max_seq_length=args.max_seq_length,
    )


def model_overrides(args) -> dict:
    return dict(reinit=[p for p in args.reinit.split(",") if p] if args.reinit else None,
                reinit_top_layers=args.reinit_top_layers, max_position_embeddings=args.max_position_embeddings)


def add_arguments(parser) -> None:
    parser.add_argument("--task_name", required=True, help="MRPC, CoLA, SST-2, STS-B, RTE, WNLI, QQP, MNLI, MNLI-MM, QNLI")
    parser.add_argument("--data_dir", required=True, help="the task's GLUE folder (train.tsv, dev.tsv, test.tsv)")
    parser.add_argument("--max_train_examples", type=int, default=None, help="train on the first N examples only")
    add_model_arguments(parser)
    add_training_arguments(parser, learning_rate=5e-5)


def run(args) -> int:
    from bertkit.errors import ConfigError

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
    for key in sorted(results):
        print(f"{key} = {results[key]}")
    return 0
