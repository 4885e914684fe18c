"""`bertkit <command>`: each command is a thin module over library functions.

A user's mistake (a missing file, a bad flag value, a malformed record) is a BertkitError and is
printed as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.metadata
import logging
import sys
import tomllib
from pathlib import Path

from bertkit.checkpoint.load import logger as load_logger
from bertkit.errors import BertkitError

# command -> module under bertkit.cli; each module has add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "run_classifier": ("run_classifier", "fine-tune and evaluate on a GLUE-style task (Google's flags)"),
    "run_ner": ("run_ner", "token classification (NER) on CoNLL-2003 column files"),
    "run_multiple_choice": ("run_multiple_choice", "multiple choice (SWAG CSV, CommonsenseQA JSONL)"),
    "run_squad": ("run_squad", "extractive question answering (SQuAD v1.1 / v2.0 JSON)"),
    "build_vocab": ("build_vocab", "learn a WordPiece vocab.txt from a text corpus (for pre-training from scratch)"),
    "create_pretraining_data": ("create_pretraining_data", "MLM/NSP pre-training instances from text, as numpy shards"),
    "run_pretraining": ("run_pretraining", "pre-train BERT (masked LM + next sentence) from scratch or a checkpoint"),
    "distill": ("distill", "distil a fine-tuned GLUE classifier into a smaller student (soft targets + labels)"),
    "prune": ("prune", "prune attention heads / FFN neurons (importance or magnitude) or weights of a classifier"),
    "encode": ("encode", "load a checkpoint, print its load report, and encode a text or a pair"),
    "inspect": ("inspect_cmd", "list a checkpoint's variables, what they map to, and parameter counts"),
    "convert": ("convert", "convert a Google TF or PyTorch .bin checkpoint to HF layout with safetensors"),
    "extract_features": ("extract_features", "per-token layer outputs (Google's format) or sentence vectors"),
    "predict": ("predict", "predict on raw text with a trained model (every head), as JSON or JSONL"),
    "similarity": ("similarity", "cosine similarity of sentence vectors, with the packaged model by default"),
    "serve": ("serve", "HTTP server: OpenAI-compatible embeddings and every task, with dynamic batching"),
    "quantize": ("quantize", "int8 copy of a checkpoint (dynamic, per-channel weights); loads like any checkpoint"),
    "export": ("export", "export a checkpoint (any head) to ONNX, fp32 or int8, with dynamic batch and length"),
}


def package_version() -> str:
    """The installed distribution's version, else (a source tree on PYTHONPATH) pyproject.toml's."""
    try:
        return importlib.metadata.version("bertkit")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
        return tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The commands' docstrings as written, and every flag's default after its help (argparse's
    ArgumentDefaultsHelpFormatter skips flags without help), except where the help already
    explains the default or there is none (None)."""

    def _format_action(self, action):
        if action.option_strings and action.default not in (None, argparse.SUPPRESS) \
                and "default" not in (action.help or ""):
            action = copy.copy(action)
            action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"
        return super()._format_action(action)


class CommandParser(argparse.ArgumentParser):
    """A command's parser: a bad flag is one line, `bertkit <command>: error: ...`, as a
    BertkitError is, instead of the command's whole usage (dozens of flags) above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Commands whose output a person reads (an answer, a score): their log is quiet unless -v asks for
# it, as with transformers' pipelines; training and conversion commands log their progress.
QUIET_COMMANDS = {"predict", "similarity"}


def _add_verbosity(parser, default=None) -> None:
    # Declared on the main parser and on every command, so `bertkit -v predict` and `bertkit
    # predict ... -v` both work; SUPPRESS keeps a command's parser from resetting the main one's value.
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const="quiet", default=default,
                       help="log warnings and errors only")
    group.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const="verbose", default=default,
                       help="log everything, including the load report and the first examples' token ids")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported, so `bertkit X` does not pay for every
    other command's imports (scikit-learn alone takes a second)."""
    parser = argparse.ArgumentParser(prog="bertkit", description="Google's BERT, re-implemented in PyTorch.")
    parser.add_argument("--version", action="version", version=f"bertkit {package_version()}")
    _add_verbosity(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, formatter_class=HelpFormatter)
        if name == command:
            module = importlib.import_module(f"bertkit.cli.{module_name}")
            sub.description = module.__doc__
            _add_verbosity(sub, default=argparse.SUPPRESS)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def log_level(command: str, verbosity: str | None) -> int:
    """WARNING with -q (and by default for the QUIET_COMMANDS), DEBUG with -v (bertkit's own logs
    only: the first examples' token ids), INFO otherwise."""
    if verbosity == "quiet" or (verbosity is None and command in QUIET_COMMANDS):
        return logging.WARNING
    return logging.DEBUG if verbosity == "verbose" else logging.INFO


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if arg in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    bertkit_level = logging.getLogger("bertkit").level
    configure_logging(log_level(args.command, args.verbosity))
    try:
        return args.run(args) or 0
    except BertkitError as err:
        print(f"bertkit {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bertkit {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        logging.getLogger("bertkit").setLevel(bertkit_level)


class _TqdmAwareHandler(logging.StreamHandler):
    """Log lines written through tqdm, so that a line logged while a progress bar is drawn goes
    above the bar instead of being glued to its end (tqdm.write clears and redraws the bar)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise; hand it to logging's error path
            self.handleError(record)


def configure_logging(level: int) -> None:
    """The command's log on stderr at `level`. A no-op for the root logger where the host already
    set logging up (pytest, an application calling main()), as logging.basicConfig is."""
    handler = _TqdmAwareHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    # Other libraries stay at INFO even with -v: their DEBUG lines (HTTP clients, font caches) are noise here.
    logging.basicConfig(level=max(level, logging.INFO), handlers=[handler])
    if level < logging.INFO:
        logging.getLogger("bertkit").setLevel(level)


def device_name(text: str) -> str:
    """An argparse type for --device: a device this machine can run (or auto), checked when the
    flags are parsed, so that `--device cuda` on a CPU-only torch is one line, not a traceback."""
    from bertkit.devices import resolve_device
    from bertkit.errors import ConfigError

    try:
        resolve_device(text, what=None)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def add_runtime_arguments(parser) -> None:
    """Where and how the commands that answer requests (predict, serve) run the model."""
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1 or auto (default: a GPU when there is one)")
    parser.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                        help="onnx: ONNX Runtime on the model's exported model.onnx (`bertkit export`), or an "
                             "export made at start-up when there is none; --model may also name an .onnx file")


def show_load_report(model) -> None:
    """For the commands whose output includes what was loaded (encode, convert): from_pretrained
    logs the report, so it is printed only when that log is off (-q), and shown once either way."""
    if model.load_report is not None and not load_logger.isEnabledFor(logging.INFO):
        print(model.load_report.summary())


def str2bool(value: str) -> bool:
    """Google's flags are written `--do_train=true`; accept the usual spellings."""
    lowered = str(value).strip().lower()
    if lowered in ("true", "t", "1", "yes", "y"):
        return True
    if lowered in ("false", "f", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def in_range(kind: type, low=None, high=None, why: str = ""):
    """An argparse type: a `kind` (int or float) in [low, high] (None: unbounded), so that a value
    out of range fails when the flags are parsed, before anything loads."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if (low is not None and not value >= low) or (high is not None and not value <= high):  # NaN fails too
            bounds = (f"between {low} and {high}" if low is not None and high is not None
                      else f"at least {low}" if low is not None else f"at most {high}")
            raise argparse.ArgumentTypeError(f"must be {bounds}{why}, got {text}")
        return value

    return parse


positive_int = in_range(int, 1)
proportion = in_range(float, 0.0, 1.0)
seed_int = in_range(int, 0, 2**32 - 1, " (numpy's seed range)")
# The shortest input that holds a token: [CLS] token [SEP].
seq_length = in_range(int, 3, why=" ([CLS], a token and [SEP])")


if __name__ == "__main__":
    sys.exit(main())
