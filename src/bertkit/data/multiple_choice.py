"""Multiple-choice data: SWAG's CSV files and CommonsenseQA's JSONL files, as one kind of example.

Every task reads into the same `MultipleChoiceExample`; a choice is scored as the pair

    [CLS] context [SEP] question ending [SEP]

(BERT's SWAG recipe, as in HF's `run_swag.py` and `utils_multiple_choice.py`): the first segment
is the choice's context, the second the question prefix (SWAG's `sent2`, empty for
CommonsenseQA) followed by the ending. The choices of one example are stacked into
(choices, seq) features, which `batching.PaddingCollator` pads to (batch, choices, seq) for
`heads.BertForMultipleChoice`.

Formats:

* SWAG (`train.csv`, `val.csv`, `test.csv` of rowanz/swagaf and of HF's dummy sample): a header
  row with `ending0`..`ending3`, the context either as `sent1` + `sent2` (preferred, as HF does)
  or as a `startphrase` alone, and a `label` column (0-3) in labelled files; `test.csv` has none.
  The `*_full.csv` files (`gold-ending`, `distractor-N`) are a different format and rejected.
* CommonsenseQA (`{train,dev}_rand_split.jsonl`, `test_rand_split_no_answers.jsonl`): one JSON
  object per line, `{"id", "question": {"stem", "choices": [{"label": "A", "text"}, ...]},
  "answerKey"}`; the test file has no `answerKey`, so its labels are None.

A malformed record is a `DataError` naming the file and the line (for CSV, the line the record
ends on) and what was expected.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from bertkit.data.batching import InputFeatures
from bertkit.data.json_records import json_field
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import open_input
from bertkit.tokenization import input_lists, pack, truncate_seq_pair

logger = logging.getLogger(__name__)

_NUM_EXAMPLES_TO_LOG = 3
_PROGRESS_BAR_MIN_EXAMPLES = 5000

SPLITS = ("train", "dev", "test")
SWAG_NUM_ENDINGS = 4


@dataclass
class MultipleChoiceExample:
    """One question with its candidate answers.

    Args:
      example_id: the record's id (CommonsenseQA's `id`; SWAG's row index), used in predictions.
      contexts: the first segment of each choice (usually the same text repeated).
      endings: the candidate answers, one per choice.
      label: the index of the correct ending, None when the file has no answer (test files).
      question: text put before every ending in the second segment (SWAG's `sent2`); "" for none.
      choice_labels: how the file names the choices ("A".."E" for CommonsenseQA, "0".."3" for
        SWAG), for writing predictions in the file's own terms.
    """

    example_id: str
    contexts: list[str]
    endings: list[str]
    label: int | None = None
    question: str = ""
    choice_labels: list[str] = field(default_factory=list)

    def __post_init__(self):
        if len(self.contexts) != len(self.endings):
            raise ValueError(f"example {self.example_id}: {len(self.contexts)} contexts for {len(self.endings)} endings")
        if not self.choice_labels:
            self.choice_labels = [str(i) for i in range(len(self.endings))]
        if self.label is not None and not 0 <= self.label < len(self.endings):
            raise ValueError(f"example {self.example_id}: label {self.label} is not one of its {len(self.endings)} choices")

    @property
    def num_choices(self) -> int:
        return len(self.endings)

    def pairs(self) -> list[tuple[str, str]]:
        """(first segment, second segment) of every choice."""
        return [(context, f"{self.question} {ending}" if self.question else ending)
                for context, ending in zip(self.contexts, self.endings)]


@dataclass
class MultipleChoiceFeatures(InputFeatures):
    """The features of one example: input_ids, attention_mask and token_type_ids hold one row per
    choice, (choices, seq); `labels` is the right choice's index (None in a test file)."""

    example_id: str
    labels: int | None = None

    bookkeeping = ("example_id",)


# ---------------------------------------------------------------------------------------------
# Readers.


def read_swag_examples(input_file: str | os.PathLike) -> list[MultipleChoiceExample]:
    """Reads a SWAG CSV file (train.csv / val.csv / test.csv); labels are None without a `label` column."""
    path = Path(input_file)
    examples = []
    handle = open_input(path, "pass SWAG's train.csv, val.csv or test.csv (columns sent1, sent2, ending0-3, label)",
                        encoding="utf-8-sig", newline="")
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty; expected a header row with sent1, sent2, ending0-3")
            columns = {name: index for index, name in enumerate(header)}
            endings = [f"ending{i}" for i in range(SWAG_NUM_ENDINGS)]
            missing = [name for name in endings if name not in columns]
            if missing:
                hint = (" (the *_full.csv files have another layout: use train.csv, val.csv or test.csv)"
                        if "gold-ending" in columns else "")
                raise DataError(f"{path}:1: the header has no column(s) {', '.join(missing)}; expected SWAG's "
                                f"columns sent1, sent2 (or startphrase), ending0-ending3 and label{hint}")
            has_sentences = "sent1" in columns and "sent2" in columns
            if not has_sentences and "startphrase" not in columns:
                raise DataError(f"{path}:1: the header has neither sent1 + sent2 nor startphrase; "
                                "expected SWAG's columns sent1, sent2, ending0-ending3 and label")
            id_column = columns.get("")  # the unnamed row-index column of HF's and swagaf's files
            for record, row in enumerate(reader, start=1):
                where = f"{path}:{reader.line_num}"
                if not row:  # a blank line
                    continue
                if len(row) != len(header):
                    raise DataError(f"{where}: record {record} has {len(row)} columns, the header has "
                                    f"{len(header)}; fix the record (is a field's quoting broken?)")
                if has_sentences:
                    context, question = row[columns["sent1"]], row[columns["sent2"]]
                else:
                    context, question = row[columns["startphrase"]], ""
                label = None
                if "label" in columns:
                    raw = row[columns["label"]].strip()
                    if raw not in {str(i) for i in range(SWAG_NUM_ENDINGS)}:
                        raise DataError(f"{where}: record {record} has label {raw!r}; expected 0-"
                                        f"{SWAG_NUM_ENDINGS - 1}, the index of the correct ending")
                    label = int(raw)
                example_id = row[id_column] if id_column is not None and row[id_column] else str(record - 1)
                examples.append(MultipleChoiceExample(
                    example_id=example_id, contexts=[context] * SWAG_NUM_ENDINGS,
                    endings=[row[columns[name]] for name in endings], label=label, question=question))
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: {err}; fix the record") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    return examples


def _get(record: Any, key: str, kind: type, where: str) -> Any:
    return json_field(record, key, kind, where, "CommonsenseQA .jsonl file")


def read_commonsenseqa_examples(input_file: str | os.PathLike) -> list[MultipleChoiceExample]:
    """Reads a CommonsenseQA .jsonl file; records without `answerKey` (the test file) get label None.

    Every record must have the same number of choices (5 in CommonsenseQA): a batch stacks them.
    """
    path = Path(input_file)
    examples = []
    num_choices = None
    handle = open_input(path, "pass CommonsenseQA's train_rand_split.jsonl, dev_rand_split.jsonl or "
                              "test_rand_split_no_answers.jsonl", encoding="utf-8-sig", newline="")
    with handle:
        try:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{where}: not valid JSON ({err.msg}, column {err.colno}); "
                                    "expected one JSON object per line") from None
                except RecursionError:
                    raise DataError(f"{where}: JSON nested too deeply; expected one CommonsenseQA record per line") \
                        from None
                example_id = _get(record, "id", str, where)
                where = f"{where} (id {example_id})"
                question = _get(record, "question", dict, where)
                stem = _get(question, "stem", str, f"{where}, question")
                choices = _get(question, "choices", list, f"{where}, question")
                labels, texts = [], []
                for index, choice in enumerate(choices):
                    labels.append(_get(choice, "label", str, f"{where}, choice {index}"))
                    texts.append(_get(choice, "text", str, f"{where}, choice {index}"))
                if not choices or len(set(labels)) != len(labels):
                    raise DataError(f"{where}: the choices must be a non-empty list with distinct labels, "
                                    f"found labels {labels}")
                if num_choices is None:
                    num_choices = len(choices)
                elif len(choices) != num_choices:
                    raise DataError(f"{where}: {len(choices)} choices, but the records before have "
                                    f"{num_choices}; every record needs the same number")
                label = None
                if "answerKey" in record:
                    answer = _get(record, "answerKey", str, where)
                    if answer not in labels:
                        raise DataError(f"{where}: answerKey {answer!r} is not one of the choice labels {labels}")
                    label = labels.index(answer)
                examples.append(MultipleChoiceExample(example_id=example_id, contexts=[stem] * len(texts),
                                                      endings=texts, label=label, choice_labels=labels))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    return examples


# ---------------------------------------------------------------------------------------------
# Tasks: where each split lives and how it is read.


@dataclass(frozen=True)
class MultipleChoiceProcessor:
    """A task's files inside --data_dir and their reader."""

    name: str
    file_names: dict
    reader: Any

    def data_file(self, data_dir: str | os.PathLike, split: str) -> Path:
        if split not in self.file_names:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return Path(data_dir) / self.file_names[split]

    def get_examples(self, data_dir: str | os.PathLike, split: str) -> list[MultipleChoiceExample]:
        path = self.data_file(data_dir, split)
        if not path.exists():
            raise DataError(f"{path}: file not found; check --data_dir, which must be the {self.name} folder holding "
                            f"{', '.join(self.file_names.values())}")
        return self.reader(path)


PROCESSORS = {
    "swag": MultipleChoiceProcessor("swag", {"train": "train.csv", "dev": "val.csv", "test": "test.csv"},
                                    read_swag_examples),
    "commonsenseqa": MultipleChoiceProcessor(
        "commonsenseqa", {"train": "train_rand_split.jsonl", "dev": "dev_rand_split.jsonl",
                          "test": "test_rand_split_no_answers.jsonl"}, read_commonsenseqa_examples),
}
PROCESSORS["csqa"] = PROCESSORS["commonsenseqa"]


def get_processor(task_name: str) -> MultipleChoiceProcessor:
    """The processor for "swag" or "commonsenseqa" (alias "csqa"), case-insensitive."""
    processor = PROCESSORS.get(task_name.strip().lower())
    if processor is None:
        raise DataError(f"unknown multiple-choice task {task_name!r}; --task must be one of: {', '.join(PROCESSORS)}")
    return processor


# ---------------------------------------------------------------------------------------------
# Examples to features.


def convert_example(example: MultipleChoiceExample, max_seq_length: int, tokenizer,
                    pad_to_max_length: bool = False) -> MultipleChoiceFeatures:
    """One example's (choices, seq) features: `[CLS] context [SEP] question ending [SEP]` per choice,
    the pair truncated longest-first (Google's `truncate_seq_pair`) to max_seq_length."""
    cache: dict[str, list[str]] = {}  # the choices usually share their context

    def tokenize(text: str) -> list[str]:
        if text not in cache:
            cache[text] = tokenizer.tokenize(text)
        return list(cache[text])

    input_ids, input_mask, segment_ids = [], [], []
    for first, second in example.pairs():
        tokens_a, tokens_b = tokenize(first), tokenize(second)
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
        tokens, segments = pack(tokens_a, tokens_b, "[CLS]", "[SEP]")
        ids, mask, segments = input_lists(tokenizer, tokens, segments, max_seq_length if pad_to_max_length else None)
        input_ids.append(ids)
        input_mask.append(mask)
        segment_ids.append(segments)
    return MultipleChoiceFeatures(input_ids, input_mask, segment_ids, labels=example.label, example_id=example.example_id)


def convert_examples_to_features(examples: Sequence[MultipleChoiceExample], max_seq_length: int, tokenizer,
                                 pad_to_max_length: bool = False, progress: bool = True
                                 ) -> list[MultipleChoiceFeatures]:
    """Features of every example, in order; all examples must have the same number of choices."""
    if max_seq_length < 4:
        raise ConfigError(f"max_seq_length must leave room for [CLS], [SEP], [SEP] and a token, got {max_seq_length}")
    if examples and len({e.num_choices for e in examples}) > 1:
        counts = sorted({e.num_choices for e in examples})
        raise DataError(f"the examples have different numbers of choices {counts}; a batch needs the same number")
    features = []
    show_bar = progress and len(examples) >= _PROGRESS_BAR_MIN_EXAMPLES
    for index, example in enumerate(tqdm(examples, desc="Converting examples", unit="ex", disable=not show_bar)):
        feature = convert_example(example, max_seq_length, tokenizer, pad_to_max_length)
        if index < _NUM_EXAMPLES_TO_LOG:
            logger.debug("*** Example %s *** label: %s", example.example_id, example.label)
            for choice, (ids, mask) in enumerate(zip(feature.input_ids, feature.attention_mask)):
                logger.debug("choice %d: %s", choice, " ".join(tokenizer.convert_ids_to_tokens(ids[: sum(mask)])))
        features.append(feature)
    return features

