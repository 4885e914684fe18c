"""Predict on raw text with a trained model; the task comes from the model's config.json.

    bertkit predict --model outputs/mrpc "The cat sat." "A cat was sitting."       # a pair
    bertkit predict --model outputs/conll2003 "Angela Merkel visited Paris."
    bertkit predict --model outputs/squad "Who visited Paris?" "Angela Merkel visited Paris."
    bertkit predict --model outputs/csqa "Where is milk kept?" fridge oven garden     # question, choices...
    bertkit predict --model outputs/pretraining "Paris is the [MASK] of France."
    bertkit predict "A sentence to embed."                   # the packaged MiniLM: a sentence vector
    bertkit predict --model outputs/mrpc --input_file pairs.txt --output_file predictions.jsonl

Positional texts are the task's arguments in order: text (and text_pair) for classification
and embeddings, question and context for question answering, the question and then every
choice for multiple choice. --input_file takes many inputs:
    .txt    one input a line, its fields separated by ` ||| ` (as extract_features' pairs)
    .tsv    one input a line, its fields separated by tabs
    .jsonl  one JSON object a line, keys named as the Python arguments: {"text", "text_pair"},
            {"question", "context"}, {"question", "choices"}
Without --output_file the answers are printed as JSON (one line per input for a file); with it,
they are written as JSONL in input order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bertkit.cli.common import add_dtype_argument
from bertkit.cli.main import add_runtime_arguments
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import atomic_write

# What one input's fields are, in positional order, for each task kind.
FIELDS = {
    "text-classification": ("text", "text_pair"),
    "feature-extraction": ("text", "text_pair"),
    "token-classification": ("text",),
    "fill-mask": ("text",),
    "question-answering": ("question", "context"),
    "multiple-choice": ("question", "choices"),
}


def add_arguments(parser) -> None:
    parser.add_argument("texts", nargs="*", help="the input's fields in order (see above)")
    parser.add_argument("--model", "--init_checkpoint", dest="model", default=None,
                        help="a directory saved by a bertkit runner, or any HF/Google BERT checkpoint "
                             "(default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--task", default=None, help="override the task the model's config names")
    parser.add_argument("--input_file", default=None, help=".txt, .tsv or .jsonl with one input per line")
    parser.add_argument("--output_file", default=None, help="write JSONL here (default: print)")
    parser.add_argument("--top_k", type=top_k_value, default=None,
                        help="classification: how many labels (default 1; 'all' for every label); "
                             "fill-mask: fillers (default 5)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="default: the length the model was fine-tuned with (its config.json)")
    add_runtime_arguments(parser)
    add_dtype_argument(parser)


def top_k_value(text: str) -> int | str:
    """--top_k: a number of answers (at least 1), or `all` (Python's and HTTP's top_k=None)."""
    if text.strip().lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of answers (at least 1) or 'all', got {text!r}")
    return value


def read_inputs(path: Path, fields: tuple[str, ...]) -> list[dict]:
    """The records of an input file, as {field: value} dicts; errors name the file and line."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}" if not path.exists() else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".tsv", ".jsonl"):
        raise DataError(f"{path}: use a .txt, .tsv or .jsonl input file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object with keys {', '.join(fields)}")
            for key, value in record.items():
                ok = (isinstance(value, list) and all(isinstance(v, str) for v in value) if key == "choices"
                      else isinstance(value, str) or (key == "text_pair" and value is None))
                if not ok:
                    raise DataError(f"{where}: {key!r} must be {'a list of strings' if key == 'choices' else 'a string'},"
                                    f" got {type(value).__name__}")
        else:
            parts = line.split(" ||| " if suffix == ".txt" else "\t")
            record = fields_from_texts(parts, fields, where)
        records.append(record)
    if not records:
        raise DataError(f"{path} has no inputs")
    return records


def fields_from_texts(texts: list[str], fields: tuple[str, ...], where: str) -> dict:
    """Positional texts -> the input's fields (multiple choice: the question, then the choices)."""
    if fields[-1] == "choices":
        if len(texts) < 3:
            raise DataError(f"{where}: give the question and at least two choices")
        return {"question": texts[0], "choices": texts[1:]}
    required = 2 if fields[0] == "question" else 1
    if not required <= len(texts) <= len(fields):
        raise DataError(f"{where}: expected {' and '.join(fields[:required])}"
                        + (f" (and {fields[-1]})" if len(fields) > required else "") + f", got {len(texts)} fields")
    return dict(zip(fields, texts))


def call_inputs(task: str, records: list[dict]):
    """Records -> the list the pipeline takes: dicts for pairs, QA and choices; strings otherwise."""
    if task in ("token-classification", "fill-mask"):
        return [record.get("text") for record in records]
    if task == "feature-extraction":
        if any(record.get("text_pair") for record in records):
            raise ConfigError("embeddings take one text per input")
        return [record.get("text") for record in records]
    return records


def run(args) -> int:
    from bertkit.inference.pipeline import pipeline

    if bool(args.texts) == bool(args.input_file):
        raise ConfigError("give the input's texts as arguments, or --input_file (not both)")
    if args.output_file and Path(args.output_file).is_dir():
        raise ConfigError(f"--output_file={args.output_file} is a directory; give a file name such as predictions.jsonl")
    options = {}
    if args.top_k is not None:
        options["top_k"] = None if args.top_k == "all" else args.top_k
    p = pipeline(args.model, args.task, device=args.device, backend=args.backend, batch_size=args.batch_size,
                 max_seq_length=args.max_seq_length, progress=None if args.output_file else False,
                 dtype=args.dtype)
    if "top_k" in options and "top_k" not in p.options:
        raise ConfigError(f"--top_k does not apply to {p.task}")
    fields = FIELDS[p.task]
    if args.input_file:
        records = read_inputs(Path(args.input_file), fields)
    else:
        records = [fields_from_texts(args.texts, fields, "the command line")]
    for i, record in enumerate(records):
        unknown = set(record) - set(fields)
        if unknown:
            raise DataError(f"input {i + 1}: unknown field(s) {', '.join(sorted(unknown))}; {p.task} takes "
                            f"{', '.join(fields)}")
    answers = p(call_inputs(p.task, records), **options)
    if args.output_file:
        with atomic_write(args.output_file) as handle:
            handle.writelines(json.dumps(answer, ensure_ascii=False) + "\n" for answer in answers)
        print(f"wrote {len(answers)} predictions ({p.task}) to {args.output_file}", file=sys.stderr)
    elif args.input_file:
        for answer in answers:
            print(json.dumps(answer, ensure_ascii=False))
    else:
        # A sentence vector is one line (hundreds of numbers, one per line, helps nobody); answers are indented.
        print(json.dumps(answers[0], ensure_ascii=False, indent=None if p.task == "feature-extraction" else 2))
    return 0
