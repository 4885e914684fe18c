"""Classification data from your own files: CSV, TSV or JSON Lines, one example per row.

What transformers' run_glue.py does with `--train_file train.csv --validation_file dev.csv`,
with every mistake reported before training, as `file:line` and the fix:

* the format comes from the extension (`.csv`, `.tsv`, `.jsonl` / `.json`), or `file_format`;
  CSV and TSV files have a header row naming the columns; a TSV is split on tabs with quoting off,
  as GLUE's files (see data/glue.py), a CSV by Python's csv module (quoted fields may span lines);
* the text columns, as run_glue chooses them: `sentence1` and `sentence2` when the file has both,
  else `text`, else `sentence`; `text_column` / `text_pair_column` name others;
* labels come from the training file (`label`, or `label_column`):
  - strings are class names, sorted (`id2label` = the sorted names, so ids do not depend on
    the order of the rows);
  - integers are sorted by value, so that 0/1 files keep label 0 as id 0;
  - floats (a value with a decimal point or an exponent) make a regression task;
  - multi-label (`problem_type="multi_label_classification"`): a JSON list (`["sports", "politics"]`)
    or a string split on `label_separator`; the example's label is then the tuple of its names;
* a label with spaces around it (ChnSentiCorp's test.tsv has "    0") is stripped and the rows
  counted in one log line naming the first: the label is plainly meant, and dropping or
  refusing the row would lose a real example;
* a label in a dev or test file that the training file never has, an empty text, a missing
  column, a training file with one class, or labels of mixed kinds (integers and words) stop
  the run with one line.

`TabularData` reads the files once; `TabularProcessor` gives the examples the DataProcessor way,
so that data/glue.py's convert_single_example turns them into features as it does for GLUE.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.data.glue import DataProcessor, InputExample
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import first_non_utf8_line, open_input

logger = logging.getLogger("bertkit")

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
# transformers' run_glue: a pair when the file has both, else the one text column.
DEFAULT_PAIR_COLUMNS = ("sentence1", "sentence2")
DEFAULT_TEXT_COLUMNS = ("text", "sentence")
DEFAULT_LABEL_COLUMN = "label"


@dataclass
class Row:
    """One example as read: its 1-based line in the file, and its columns."""

    line: int
    values: dict


def file_format(path: str | os.PathLike, override: str | None = None) -> str:
    """csv, tsv or jsonl: `override`, else the file's extension."""
    if override:
        fmt = override.strip().lower().replace("json_lines", "jsonl")
        if fmt not in FORMATS:
            raise ConfigError(f"--file_format={override!r}: use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ConfigError(f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; name the file "
                          f".csv, .tsv or .jsonl, or pass --file_format csv|tsv|jsonl")
    return _EXTENSIONS[suffix]


def read_rows(path: str | os.PathLike, fmt: str) -> tuple[list[str], list[Row]]:
    """The file's column names (for a JSONL file, the keys of its records in first-seen order) and rows."""
    path = Path(path)
    try:
        with open_input(path, "check the file name", encoding="utf-8-sig", newline="") as handle:
            if fmt == "jsonl":
                return _read_jsonl(path, handle)
            # TSV with quoting off keeps a row on its line (GLUE's rule); CSV quotes as Excel writes them.
            reader = csv.reader(handle, **({"delimiter": "\t", "quotechar": None} if fmt == "tsv" else {}))
            rows: list[Row] = []
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{path}: the file is empty; it needs a header row naming the columns")
                header = [name.strip() for name in header]
                for values in reader:
                    if not values or (len(values) == 1 and not values[0].strip()):
                        continue  # a blank line, e.g. the one editors leave at the end
                    if len(values) != len(header):
                        raise DataError(f"{path}:{reader.line_num}: {len(values)} columns, but the header has "
                                        f"{len(header)} ({', '.join(header)}); fix the line"
                                        + (" (a quote inside a field must be doubled)" if fmt == "csv" else ""))
                    rows.append(Row(reader.line_num, dict(zip(header, values))))
            except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                raise DataError(f"{path}:{reader.line_num}: {err}; fix the line") from None
            return header, rows
    except UnicodeDecodeError:
        raise DataError(f"{path}:{first_non_utf8_line(path)}: not valid UTF-8; re-save the file as UTF-8") from None


def _read_jsonl(path: Path, handle) -> tuple[list[str], list[Row]]:
    columns: dict[str, None] = {}
    rows = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}:{number}: not a JSON object ({err}); one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        columns.update(dict.fromkeys(record))
        rows.append(Row(number, record))
    return list(columns), rows


def choose_text_columns(columns: list[str], text_column: str | None, text_pair_column: str | None,
                        path) -> tuple[str, str | None]:
    """The text (and pair) column, as given or by run_glue's defaults; each must exist in the file."""
    found = ", ".join(columns) or "none"
    for flag, name in (("--text_column", text_column), ("--text_pair_column", text_pair_column)):
        if name is not None and name not in columns:
            raise DataError(f"{path}: no column {name!r} ({flag}); the columns found are: {found}")
    if text_column is not None:
        return text_column, text_pair_column
    if text_pair_column is None and all(c in columns for c in DEFAULT_PAIR_COLUMNS):
        return DEFAULT_PAIR_COLUMNS
    for name in DEFAULT_TEXT_COLUMNS:
        if name in columns:
            return name, text_pair_column
    raise DataError(f"{path}: no text column: looked for {' / '.join(DEFAULT_TEXT_COLUMNS)} (or sentence1 and "
                    f"sentence2); the columns found are: {found}; pass --text_column NAME")


def _kind(value) -> str:
    """What a raw label is: int, float, str or list (JSON lists and JSONL numbers included)."""
    if isinstance(value, bool):
        return "str"  # true/false are names, not 1/0
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    try:
        int(value)
        return "int"
    except ValueError:
        pass
    try:
        return "float" if math.isfinite(float(value)) else "str"
    except ValueError:
        return "str"


@dataclass
class LabelSpec:
    """What the labels are: the problem type and, for classification, the names in id order."""

    problem_type: str
    names: list[str] = field(default_factory=list)  # empty for regression

    @property
    def num_labels(self) -> int:
        return 1 if self.problem_type == "regression" else len(self.names)


class TabularData:
    """The files of one run, read and checked once; the examples of each split.

    `labels` (names in id order) fixes the label set, e.g. a fine-tuned model's when there is no
    training file; otherwise it comes from the training file.
    """

    def __init__(self, train_file=None, validation_file=None, test_file=None, *, file_format_override=None,
                 text_column=None, text_pair_column=None, label_column=DEFAULT_LABEL_COLUMN, problem_type=None,
                 label_separator=",", labels: list[str] | None = None, validation_split_percentage=None, seed=42):
        if problem_type is not None and problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"--problem_type={problem_type!r}: use one of {', '.join(PROBLEM_TYPES)}")
        if validation_split_percentage is not None:
            if validation_file is not None:
                raise ConfigError("--validation_split_percentage carves a dev split out of --train_file; it cannot "
                                  "be combined with --validation_file: give one of them")
            if train_file is None:
                raise ConfigError("--validation_split_percentage needs --train_file to carve the dev split from")
            if not 0 < validation_split_percentage < 100:
                raise ConfigError(f"--validation_split_percentage={validation_split_percentage}: give a percentage "
                                  "between 0 and 100, e.g. 10")
        self.files = {"train": train_file, "dev": validation_file, "test": test_file}
        self.files = {split: Path(f) for split, f in self.files.items() if f is not None}
        self.override = file_format_override
        for path in self.files.values():
            file_format(path, file_format_override)  # an unknown extension fails before anything is read
        self.text_column, self.text_pair_column = text_column, text_pair_column
        self.label_column = label_column or DEFAULT_LABEL_COLUMN
        self.label_separator = label_separator
        self.validation_split_percentage = validation_split_percentage
        self.seed = seed
        self._examples: dict[str, list[InputExample]] = {}
        self._labelled: dict[str, bool] = {}
        self.spec = self._label_spec(problem_type, labels)
        # Integer labels are compared by value, so that a dev file's "01" or a JSONL 1 is the class "1".
        self._int_labels = bool(self.spec.names) and all(_kind(n) == "int" for n in self.spec.names)

    # -- reading ----------------------------------------------------------------------------

    def _rows(self, split: str) -> tuple[Path, tuple[str, str | None], list[Row], bool]:
        path = self.files[split]
        columns, rows = read_rows(path, file_format(path, self.override))
        if not rows:
            raise DataError(f"{path}: no examples (only a header or blank lines)")
        text_columns = choose_text_columns(columns, self.text_column, self.text_pair_column, path)
        labelled = self.label_column in columns
        if not labelled and split != "test":
            raise DataError(f"{path}: no label column {self.label_column!r}; the columns found are: "
                            f"{', '.join(columns)}; pass --label_column NAME")
        return path, text_columns, rows, labelled

    def _raw_label(self, row: Row, path: Path, stripped: list[Row]):
        """The row's label, stripped of spaces around it (the row goes into `stripped`, for the log line)."""
        value = row.values.get(self.label_column)
        if value is None:
            raise DataError(f"{path}:{row.line}: no {self.label_column!r} value; give every example its label")
        if isinstance(value, str) and value != value.strip():
            stripped.append(row)
            value = value.strip()
        return value

    def _label_spec(self, problem_type: str | None, names: list[str] | None) -> LabelSpec:
        if names is not None:  # the model's labels (prediction or evaluation without training)
            if problem_type == "regression":
                return LabelSpec(problem_type)
            return LabelSpec(problem_type or "single_label_classification", [str(n) for n in names])
        if "train" not in self.files:
            if problem_type == "regression":
                return LabelSpec(problem_type)
            raise ConfigError("no --train_file to read the labels from: give one, or a fine-tuned model whose "
                              "config.json has its id2label")
        path, _, rows, _ = self._rows("train")
        raw = [(row, self._raw_label(row, path, [])) for row in rows]  # _read logs the stripped ones
        if problem_type == "multi_label_classification":
            names = sorted({name for row, value in raw for name in self._label_names(value, row, path)})
            if len(names) < 2:
                raise DataError(f"{path}: the training file has {len(names)} label name(s) {names}; multi-label "
                                "classification needs at least two (check --label_column and --label_separator)")
            return LabelSpec(problem_type, names)
        kinds: dict[str, Row] = {}
        for row, value in raw:
            self._check_not_empty(value, row, path)
            kinds.setdefault(_kind(value), row)
        if "list" in kinds:
            row = kinds["list"]
            raise DataError(f"{path}:{row.line}: the label is a list; for several labels per example pass "
                            "--problem_type multi_label_classification")
        if problem_type == "regression" or (problem_type is None and "float" in kinds and "str" not in kinds):
            for row, value in raw:
                score = float(value) if _kind(value) in ("int", "float") else math.nan
                if not math.isfinite(score):
                    raise DataError(f"{path}:{row.line}: expected a number for regression, found {value!r}")
            return LabelSpec("regression")
        if len(kinds) > 1:
            (kind_a, row_a), (kind_b, row_b) = sorted(kinds.items(), key=lambda kv: kv[1].line)[:2]
            raise DataError(f"{path}: mixed label kinds: line {row_a.line} has {_KIND_NAMES[kind_a]} "
                            f"{row_a.values[self.label_column]!r}, line {row_b.line} has {_KIND_NAMES[kind_b]} "
                            f"{row_b.values[self.label_column]!r}; make every label the same kind (or pass "
                            "--problem_type regression for scores)")
        values = {str(int(value)) if kinds.keys() == {"int"} else str(value) for _, value in raw}
        if len(values) < 2:
            raise DataError(f"{path}: every example has the label {values.pop()!r}; a classifier needs at least "
                            "two classes (is --label_column the right column?)")
        names = sorted(values, key=int) if kinds.keys() == {"int"} else sorted(values)
        return LabelSpec(problem_type or "single_label_classification", names)

    def _label_names(self, value, row: Row, path: Path) -> list[str]:
        """A multi-label value's names: a JSON list, or a string split on the separator ("" is none)."""
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                raise DataError(f"{path}:{row.line}: the label {value!r} starts like a JSON list but is not one; "
                                "write it as [\"a\", \"b\"] or as a delimited string") from None
        if isinstance(value, list):
            if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
                raise DataError(f"{path}:{row.line}: a label list holds strings or integers, found {value!r}")
            names = [str(v).strip() for v in value]
        elif isinstance(value, str):
            names = [part.strip() for part in value.split(self.label_separator)] if self.label_separator else [value]
        elif isinstance(value, int) and not isinstance(value, bool):
            names = [str(value)]
        else:
            raise DataError(f"{path}:{row.line}: a multi-label value is a list or a string, found {value!r}")
        return list(dict.fromkeys(n for n in names if n))

    def examples(self, split: str) -> list[InputExample]:
        """The split's examples (read once); `test` without labels gets a placeholder label, as GLUE's."""
        if split not in self._examples:
            if split in ("train", "dev") and self.validation_split_percentage:
                self._split_train()
            else:
                self._examples[split] = self._read(split)
        return self._examples[split]

    def has_labels(self, split: str) -> bool:
        """Whether the split's file has a label column (a test file may have none)."""
        self.examples(split)
        return self._labelled.get(split, True)

    def _split_train(self) -> None:
        """A seeded dev split out of the training file (the rest stays the training set)."""
        examples = self._read("train")
        self._labelled["dev"] = True
        shuffled = list(range(len(examples)))
        random.Random(self.seed).shuffle(shuffled)
        n_dev = max(1, round(len(examples) * self.validation_split_percentage / 100))
        if n_dev >= len(examples):
            raise DataError(f"{self.files['train']}: {len(examples)} examples are too few to carve "
                            f"{self.validation_split_percentage}% out for a dev split")
        dev = set(shuffled[:n_dev])  # each split keeps the file's order
        self._examples["dev"] = [e for i, e in enumerate(examples) if i in dev]
        self._examples["train"] = [e for i, e in enumerate(examples) if i not in dev]
        logger.info("--validation_split_percentage=%s: %d of %d training examples held out as the dev split "
                    "(seed %d)", self.validation_split_percentage, n_dev, len(examples), self.seed)

    def _read(self, split: str) -> list[InputExample]:
        if split not in self.files:
            flag = {"train": "--train_file", "dev": "--validation_file", "test": "--test_file"}[split]
            raise ConfigError(f"no {flag}: the {split} split needs one"
                              + (" (or --validation_split_percentage)" if split == "dev" else ""))
        path, (text_a, text_b), rows, labelled = self._rows(split)
        self._labelled[split] = labelled
        stripped: list[Row] = []
        examples = []
        for row in rows:
            texts = [self._text(row, column, path) if column is not None else None for column in (text_a, text_b)]
            label = self._label(row, path, stripped) if labelled else self._placeholder()
            examples.append(InputExample(guid=f"{split}-{row.line}", text_a=texts[0], text_b=texts[1], label=label))
        if stripped:
            logger.warning("%s: %d label(s) had spaces around them and were read stripped (the first: line %d, %r)",
                           path, len(stripped), stripped[0].line, stripped[0].values[self.label_column])
        return examples

    @staticmethod
    def _text(row: Row, column: str, path: Path) -> str:
        text = row.values.get(column)
        if text is None or (isinstance(text, str) and not text.strip()):
            raise DataError(f"{path}:{row.line}: empty text in column {column!r}; fill it in or remove the line")
        if not isinstance(text, str):
            raise DataError(f"{path}:{row.line}: column {column!r} must be text, found {text!r}")
        return text

    def _check_not_empty(self, value, row: Row, path: Path) -> None:
        if value == "":  # only multi-label examples may have no label
            raise DataError(f"{path}:{row.line}: empty label in column {self.label_column!r}; fill it in or remove "
                            "the line")

    def _label(self, row: Row, path: Path, stripped: list[Row]):
        value = self._raw_label(row, path, stripped)
        spec = self.spec
        if spec.problem_type != "multi_label_classification":
            self._check_not_empty(value, row, path)
        if spec.problem_type == "regression":
            score = float(value) if _kind(value) in ("int", "float") else math.nan
            if not math.isfinite(score):
                raise DataError(f"{path}:{row.line}: expected a number for regression, found {value!r}")
            return score
        names = self._label_names(value, row, path) if spec.problem_type == "multi_label_classification" else \
            [str(int(value)) if self._int_labels and _kind(value) == "int" else str(value)]
        unseen = [n for n in names if n not in spec.names]
        if unseen:
            raise DataError(f"{path}:{row.line}: label {unseen[0]!r} never appears in the training file (its labels: "
                            f"{', '.join(spec.names[:20])}{' ...' if len(spec.names) > 20 else ''}); fix the line or "
                            "add examples of it to the training data")
        return tuple(names) if spec.problem_type == "multi_label_classification" else names[0]

    def _placeholder(self):
        """An unlabelled test file's label: Google's placeholder (the first), never scored."""
        if self.spec.problem_type == "regression":
            return 0.0
        if self.spec.problem_type == "multi_label_classification":
            return ()
        return self.spec.names[0]


_KIND_NAMES = {"int": "integer", "float": "number", "str": "string", "list": "list"}


class TabularProcessor(DataProcessor):
    """The DataProcessor interface over TabularData, so the GLUE conversion and cache apply unchanged."""

    def __init__(self, data: TabularData):
        self.data = data
        self.labels = tuple(data.spec.names)
        self.is_regression = data.spec.problem_type == "regression"
        self.problem_type = data.spec.problem_type

    def get_examples(self, data_dir, split: str) -> list[InputExample]:
        return self.data.examples(split)

    def data_file(self, data_dir, split: str) -> Path:
        # A carved dev split has no file of its own: its features are not cached (see build_dataset).
        return self.data.files.get(split, Path(os.devnull))

    def has_labels(self, split: str) -> bool:
        return self.data.has_labels(split)
