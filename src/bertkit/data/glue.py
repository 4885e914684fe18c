"""GLUE data the way Google's `run_classifier.py` reads it: processors, examples and features.

Names and semantics follow google-research/bert `run_classifier.py` (MRPC, CoLA, MNLI) and, for
the tasks Google's script does not cover, the GLUE processors of HF `transformers` (`glue.py`),
which were written to the same conventions:

* a `.tsv` file is split on tabs only, with quoting off (`quotechar=None`): GLUE text contains
  unbalanced `"` characters (MRPC dev line 2 starts with one), which a quoting reader would glue
  onto the following lines;
* text is NOT stripped: SST-2 sentences end in a space before the tab, and Google passes that
  space on to the tokenizer (which drops it, so the features do not change);
* guids are `"<set_type>-<row index>"`, where the index counts the header row, except for the
  tasks whose files carry an id column (MNLI, QNLI, QQP, RTE, STS-B, WNLI), which use the id;
  the set type is the file's stem ("dev_matched", and "test_matched" where Google says "test");
* unlabeled test files get the first label of `get_labels()` (0.0 for STS-B), so that test
  examples flow through `convert_single_example` unchanged.

Unlike Google's script, a malformed row is reported as a `DataError` naming the file, the
1-based line and what was expected, instead of an IndexError or KeyError deep in the pipeline.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from bertkit.data.batching import InputFeatures
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import first_non_utf8_line, open_input
from bertkit.tokenization import input_lists, pack, truncate_seq_pair

logger = logging.getLogger(__name__)

# Google logs the first few converted examples so that a wrong vocab or casing shows at a glance.
_NUM_EXAMPLES_TO_LOG = 5
# Below this many examples conversion takes about a second, so a progress bar would be noise.
_PROGRESS_BAR_MIN_EXAMPLES = 5000

SPLITS = ("train", "dev", "test")


@dataclass
class InputExample:
    """A single training/test example for simple sequence classification.

    Args:
      guid: unique id for the example, e.g. "train-1".
      text_a: the untokenized text of the first sequence.
      text_b: the untokenized text of the second sequence, for sequence-pair tasks.
      label: the label string for classification tasks, a float for regression (STS-B), a tuple of
        label strings for multi-label classification.
    """

    guid: str
    text_a: str
    text_b: str | None = None
    label: str | float | tuple[str, ...] | None = None


class PaddingInputExample:
    """A fake example that pads a batch to a fixed size (Google's TPU eval/predict trick).

    It converts to all-zero features with `is_real_example=False`, so that metrics can give it
    weight zero; useful wherever a fixed batch shape is required (static-shape compilation).
    """


@dataclass
class ClassifierFeatures(InputFeatures):
    """A single set of features of data: Google's `InputFeatures`, as it writes them to `train.tf_record`.

    The fields are Google's under the model's argument names: `input_mask` is `attention_mask`,
    `segment_ids` is `token_type_ids` and `label_id` is `labels` (a class id, or a float score
    for regression).
    """

    labels: int | float | list[float]  # list: multi-label 0/1 targets
    is_real_example: bool = True

    bookkeeping = ("is_real_example",)


@dataclass(frozen=True)
class _Columns:
    """Where the fields of one kind of GLUE file sit in a row (0-based; -1 is the last column)."""

    text_a: int
    text_b: int | None = None
    label: int | None = None  # None: an unlabeled (test) file
    guid: int | None = None  # None: the guid uses the row index instead of an id column
    header: bool = True

    def min_columns(self) -> int:
        """How many columns a row needs so that every field above is present and distinct."""
        used = [c for c in (self.text_a, self.text_b, self.guid) if c is not None]
        needed = max(used) + 1
        if self.label is not None:
            # A "last column" label must come after the text, else a short row would pass its
            # second sentence off as the label.
            needed = max(needed, self.label + 1) if self.label >= 0 else needed + 1
        return needed


class DataProcessor:
    """Base class for data converters for sequence classification data sets.

    Subclasses describe their files; reading, validation and example creation live here once.

    Attributes:
      labels: the label strings, in label-id order (empty for regression).
      is_regression: the label is a float score, not a class (STS-B).
      metric_names: the metrics GLUE reports for the task, a hint for the evaluation code.
      labeled_columns / test_columns: the row layout of train/dev files and of the test file.
      file_names: the file name of each split inside `--data_dir`.
    """

    labels: tuple[str, ...] = ()
    is_regression: bool = False
    metric_names: tuple[str, ...] = ("accuracy",)
    labeled_columns: _Columns
    test_columns: _Columns
    file_names: dict[str, str] = {"train": "train.tsv", "dev": "dev.tsv", "test": "test.tsv"}

    def get_train_examples(self, data_dir: str | os.PathLike) -> list[InputExample]:
        """Gets a collection of `InputExample`s for the train set."""
        return self.get_examples(data_dir, "train")

    def get_dev_examples(self, data_dir: str | os.PathLike) -> list[InputExample]:
        """Gets a collection of `InputExample`s for the dev set."""
        return self.get_examples(data_dir, "dev")

    def get_test_examples(self, data_dir: str | os.PathLike) -> list[InputExample]:
        """Gets a collection of `InputExample`s for prediction (labels are placeholders)."""
        return self.get_examples(data_dir, "test")

    def get_labels(self) -> list[str]:
        """Gets the list of labels for this data set (empty for regression)."""
        return list(self.labels)

    @property
    def num_labels(self) -> int:
        """Width of the classifier output: one score for regression, else one logit per label."""
        return 1 if self.is_regression else len(self.labels)

    def data_file(self, data_dir: str | os.PathLike, split: str) -> Path:
        """The file that holds `split` ("train", "dev" or "test") inside `data_dir`."""
        if split not in self.file_names:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return Path(data_dir) / self.file_names[split]

    def get_examples(self, data_dir: str | os.PathLike, split: str) -> list[InputExample]:
        """Reads and validates the examples of one split."""
        path = self.data_file(data_dir, split)
        columns = self.test_columns if split == "test" else self.labeled_columns
        # The guid prefix is the file's stem, e.g. "dev_matched" for MNLI's dev file.
        return self._create_examples(self._read_tsv(path), path.stem, columns, path)

    @classmethod
    def _read_tsv(cls, input_file: str | os.PathLike) -> list[list[str]]:
        """Reads a tab separated value file into rows; row i is line i + 1 of the file.

        `utf-8-sig` drops the byte-order mark that MRPC's train.tsv and dev.tsv begin with.
        With quoting off a row can never span lines, which keeps the line numbers exact.
        """
        path = Path(input_file)
        what = (f"check --data_dir, which must be the task's folder holding "
                f"{', '.join(sorted(set(cls.file_names.values())))}")
        try:
            with open_input(path, what, encoding="utf-8-sig", newline="") as f:
                reader = csv.reader(f, delimiter="\t", quotechar=None)
                try:
                    return list(reader)
                except csv.Error as err:  # e.g. a field over csv.field_size_limit()
                    raise DataError(f"{path}:{reader.line_num}: {err}; fix the line") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}:{first_non_utf8_line(path)}: not valid UTF-8; re-save the file as UTF-8") from None

    def _create_examples(
        self, lines: list[list[str]], set_type: str, columns: _Columns, path: Path
    ) -> list[InputExample]:
        """Creates examples from the rows of one file, checking every row it uses."""
        examples = []
        needed = columns.min_columns()
        for i, line in enumerate(lines):
            if columns.header and i == 0:
                continue
            where = f"{path}:{i + 1}"
            if len(line) < needed:
                raise DataError(
                    f"{where}: expected at least {needed} tab-separated columns, found {len(line)}; "
                    f"fix or remove the line (is it the {set_type} file of this task?)"
                )
            guid_part = i if columns.guid is None else line[columns.guid]
            text_b = None if columns.text_b is None else line[columns.text_b]
            label = self._parse_label(line[columns.label], where) if columns.label is not None else self._placeholder_label()
            examples.append(
                InputExample(guid=f"{set_type}-{guid_part}", text_a=line[columns.text_a], text_b=text_b, label=label)
            )
        return examples

    def _parse_label(self, raw: str, where: str) -> str | float:
        if self.is_regression:
            try:
                score = float(raw)
            except ValueError:
                score = math.nan
            if not math.isfinite(score):  # "nan" and "inf" parse, but train NaN
                raise DataError(f"{where}: expected a float similarity score, found {raw!r}; fix the line")
            return score
        if raw not in self.labels:
            raise DataError(
                f"{where}: expected a label in {list(self.labels)}, found {raw!r}; "
                "fix the line or check the task name (--task_name)"
            )
        return raw

    def _placeholder_label(self) -> str | float:
        """Test files have no labels; Google gives every test example the first label."""
        return 0.0 if self.is_regression else self.labels[0]


# ---------------------------------------------------------------------------------------------
# The GLUE tasks: one small class per task, named as in Google's script, holding only its layout.


class MrpcProcessor(DataProcessor):
    """MRPC: `Quality  #1 ID  #2 ID  #1 String  #2 String`; test: `index  #1 ID  #2 ID  ...`."""

    labels = ("0", "1")
    metric_names = ("accuracy", "f1")
    labeled_columns = _Columns(text_a=3, text_b=4, label=0)
    test_columns = _Columns(text_a=3, text_b=4)


class ColaProcessor(DataProcessor):
    """CoLA: headerless `source  label  orig_label  sentence`; test: `index  sentence` + header."""

    labels = ("0", "1")
    metric_names = ("matthews_corrcoef",)
    labeled_columns = _Columns(text_a=3, label=1, header=False)
    test_columns = _Columns(text_a=1)


class Sst2Processor(DataProcessor):
    """SST-2: `sentence  label`; test: `index  sentence`."""

    labels = ("0", "1")
    labeled_columns = _Columns(text_a=0, label=1)
    test_columns = _Columns(text_a=1)


class StsbProcessor(DataProcessor):
    """STS-B: 10 columns, sentences in 7 and 8, the 0-5 score in 9; test has no score column."""

    is_regression = True
    metric_names = ("pearson", "spearman")
    labeled_columns = _Columns(text_a=7, text_b=8, label=9, guid=0)
    test_columns = _Columns(text_a=7, text_b=8, guid=0)


class RteProcessor(DataProcessor):
    """RTE: `index  sentence1  sentence2  label`; test has no label column."""

    labels = ("entailment", "not_entailment")
    labeled_columns = _Columns(text_a=1, text_b=2, label=-1, guid=0)
    test_columns = _Columns(text_a=1, text_b=2, guid=0)


class WnliProcessor(RteProcessor):
    """WNLI: RTE's layout with labels 0/1."""

    labels = ("0", "1")


class QnliProcessor(RteProcessor):
    """QNLI: `index  question  sentence  label`, RTE's layout and labels."""


class QqpProcessor(DataProcessor):
    """QQP: `id  qid1  qid2  question1  question2  is_duplicate`; test: `id  question1  question2`."""

    labels = ("0", "1")
    metric_names = ("accuracy", "f1")
    labeled_columns = _Columns(text_a=3, text_b=4, label=5, guid=0)
    test_columns = _Columns(text_a=1, text_b=2, guid=0)


class MnliProcessor(DataProcessor):
    """MNLI (matched): sentences in columns 8 and 9, gold label last; dev is dev_matched.tsv.

    Train rows have 12 columns (label1, gold_label), dev rows 16 (five annotator labels, gold).
    """

    labels = ("contradiction", "entailment", "neutral")
    labeled_columns = _Columns(text_a=8, text_b=9, label=-1, guid=0)
    test_columns = _Columns(text_a=8, text_b=9, guid=0)
    file_names = {"train": "train.tsv", "dev": "dev_matched.tsv", "test": "test_matched.tsv"}


class MnliMismatchedProcessor(MnliProcessor):
    """MNLI mismatched: MNLI's training data, evaluated on the mismatched genres."""

    file_names = {"train": "train.tsv", "dev": "dev_mismatched.tsv", "test": "test_mismatched.tsv"}


PROCESSORS: dict[str, type[DataProcessor]] = {
    "cola": ColaProcessor,
    "mnli": MnliProcessor,
    "mnli-mm": MnliMismatchedProcessor,
    "mrpc": MrpcProcessor,
    "qnli": QnliProcessor,
    "qqp": QqpProcessor,
    "rte": RteProcessor,
    "sst-2": Sst2Processor,
    "sst2": Sst2Processor,
    "sts-b": StsbProcessor,
    "stsb": StsbProcessor,
    "wnli": WnliProcessor,
}


def get_processor(task_name: str) -> DataProcessor:
    """The processor for a GLUE task name such as "MRPC" or "sst-2" (case-insensitive)."""
    processor_class = PROCESSORS.get(task_name.strip().lower())
    if processor_class is None:
        raise DataError(f"unknown task {task_name!r}; --task_name must be one of: {', '.join(PROCESSORS)}")
    return processor_class()


# ---------------------------------------------------------------------------------------------
# Examples to features.


def convert_single_example(
    ex_index: int,
    example: InputExample | PaddingInputExample,
    label_list: Sequence[str] | None,
    max_seq_length: int,
    tokenizer,
    log: bool = True,
    pad_to_max_length: bool = True,
) -> ClassifierFeatures:
    """Converts a single `InputExample` into a single `ClassifierFeatures`, exactly as Google does.

    Args:
      ex_index: the example's position; the first five are logged when `log` is set.
      label_list: the processor's `get_labels()`; empty or None for regression, where the label
        id is `float(example.label)`.
      tokenizer: anything with Google's `tokenize` and `convert_tokens_to_ids`.
      pad_to_max_length: zero-pad to `max_seq_length` (Google); False returns the unpadded
        lists, for batches padded to their own longest row (dynamic padding).
    """
    if max_seq_length < 3:  # a pair is cut to max_seq_length - 3 pieces, which must not be negative
        raise ConfigError(f"max_seq_length must leave room for [CLS], [SEP] and a token, got {max_seq_length}")
    if isinstance(example, PaddingInputExample):
        length = max_seq_length if pad_to_max_length else 0
        return ClassifierFeatures([0] * length, [0] * length, [0] * length, labels=0, is_real_example=False)

    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = None
    if example.text_b:
        tokens_b = tokenizer.tokenize(example.text_b)

    if tokens_b:
        # Account for [CLS], [SEP], [SEP] with "- 3"; trims the longer sequence first, in place.
        truncate_seq_pair(tokens_a, tokens_b, max_seq_length - 3)
    elif len(tokens_a) > max_seq_length - 2:
        # Account for [CLS] and [SEP] with "- 2".
        tokens_a = tokens_a[: max_seq_length - 2]

    # BERT's convention: [CLS] a [SEP] b [SEP] with segment (token type) ids 0 ... 0 1 ... 1.
    # A second sentence that tokenizes to nothing leaves a single-sequence input, as in Google.
    tokens, segment_ids = pack(tokens_a, tokens_b or None, "[CLS]", "[SEP]")

    input_ids, input_mask, segment_ids = input_lists(tokenizer, tokens, segment_ids,
                                                     max_seq_length if pad_to_max_length else None)

    label_id = _label_id(example, label_list)
    if log and ex_index < _NUM_EXAMPLES_TO_LOG:
        logger.debug("*** Example ***")
        logger.debug("guid: %s", example.guid)
        logger.debug("tokens: %s", " ".join(tokens))
        logger.debug("input_ids: %s", " ".join(str(x) for x in input_ids))
        logger.debug("input_mask: %s", " ".join(str(x) for x in input_mask))
        logger.debug("segment_ids: %s", " ".join(str(x) for x in segment_ids))
        logger.debug("label: %s (id = %s)", example.label, label_id)

    return ClassifierFeatures(input_ids, input_mask, segment_ids, labels=label_id, is_real_example=True)


def _label_id(example: InputExample, label_list: Sequence[str] | None) -> int | float | list[float]:
    if not label_list:
        return float(example.label)
    if isinstance(example.label, (tuple, list)):  # multi-label: a 0/1 target per label, for the BCE loss
        unknown = [name for name in example.label if name not in label_list]
        if unknown:
            raise DataError(f"example {example.guid}: label {unknown[0]!r} is not one of {list(label_list)}")
        return [float(name in example.label) for name in label_list]
    try:
        return list(label_list).index(example.label)
    except ValueError:
        raise DataError(
            f"example {example.guid}: label {example.label!r} is not one of {list(label_list)}; "
            "fix the data or pass the task's get_labels()"
        ) from None


def convert_examples_to_features(
    examples: Sequence[InputExample | PaddingInputExample],
    label_list: Sequence[str] | None,
    max_seq_length: int,
    tokenizer,
    pad_to_max_length: bool = True,
    progress: bool = True,
) -> list[ClassifierFeatures]:
    """Converts a list of `InputExample`s to a list of `ClassifierFeatures` (logs the first five)."""
    show_bar = progress and len(examples) >= _PROGRESS_BAR_MIN_EXAMPLES
    return [
        convert_single_example(i, example, label_list, max_seq_length, tokenizer, pad_to_max_length=pad_to_max_length)
        for i, example in enumerate(tqdm(examples, desc="Converting examples", unit="ex", disable=not show_bar))
    ]
