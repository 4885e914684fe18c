"""CoNLL-2003 named-entity data: column files, IOB tags, word-piece alignment and windows.

Reading (`read_conll`). A CoNLL file holds one word per line, its fields split on whitespace, and
a blank line between sentences; `-DOCSTART-` lines separate documents and are not sentences.
CoNLL-2003's English files have four columns, `token POS chunk NER`; a generic two-column
`token label` file reads the same way. The label is the last column unless `label_column` says
otherwise (`None`: unlabelled text, the token column only). Every line of a file must have the
same number of columns; a line that does not, or a tag that is not `O`, `B-TYPE` or `I-TYPE`, is a
DataError naming the file and the 1-based line.

Tags. CoNLL-2003 uses IOB1: `I-X` starts an entity and `B-X` appears only where an entity follows
another of the same type. Tags are converted to IOB2 on reading (`iob1_to_iob2`: an `I-X` that
starts an entity becomes `B-X`); the conversion leaves IOB2 input unchanged, so either is fine.
The label list comes from the training file: `O` first, then the others sorted (`get_labels`).

Features (`convert_examples_to_features`). Each word is split into word pieces; the first piece
carries the word's label, the other pieces, `[CLS]` and `[SEP]` carry -100 (ignored by the loss).
A sentence whose pieces do not fit into `max_seq_length - 2` tokens is cut into overlapping
windows of whole words, never truncated:

* a window holds as many whole words as fit; the next window starts at the first word at least
  `doc_stride` pieces after the start of the previous one (default: half a window), and never
  after the previous window's end, so consecutive windows overlap and every word is in one;
* each word is predicted in exactly one window: the one where it has the most context, scored as
  in Google's SQuAD `_check_is_max_context`, `min(pieces before it, pieces after it) + 0.01 *
  window length` (ties: the earlier window). Only there does its first piece carry the label (and
  the prediction); in the other windows it is context only.

Every feature keeps `example_index` (its sentence) and `word_ids` (the word of every token, -1 for
`[CLS]`/`[SEP]`), and `predict_words` (the word whose prediction this token carries, else -1), so
that `align_predictions` maps per-token predictions back to one tag per word of every sentence.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bertkit.data.batching import InputFeatures
from bertkit.errors import DataError
from bertkit.io_utils import first_non_utf8_line, open_input
from bertkit.tokenization import pack

logger = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"
IGNORE_INDEX = -100
_TAG = re.compile(r"^([BI])-(\S+)$")


@dataclass
class NerExample:
    """One sentence: its words and (IOB2) tags, and where it starts in its file."""

    guid: str
    words: list[str]
    labels: list[str] | None = None
    line: int | None = None  # 1-based line of the first word; word i is on line `line + i`


@dataclass
class NerFeature(InputFeatures):
    """One window of one sentence: the model's inputs plus the map back to the sentence's words."""

    example_index: int
    word_ids: list[int]  # word index of every token; -1 for [CLS] and [SEP]
    # The word predicted at each token (its first piece, in the window that owns it); else -1.
    predict_words: list[int]
    labels: list[int] | None = None  # a class id per token, -100 where no word is predicted; None: unlabelled

    bookkeeping = ("example_index", "word_ids", "predict_words")


# -- tags ------------------------------------------------------------------------------------


def iob1_to_iob2(tags: Sequence[str]) -> list[str]:
    """IOB1 -> IOB2: an `I-X` that starts an entity (after `O`, after another type, or first in the
    sentence) becomes `B-X`. IOB2 input comes back unchanged."""
    converted = []
    previous = OUTSIDE
    for tag in tags:
        if tag.startswith("I-") and (previous == OUTSIDE or previous[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        converted.append(tag)
        previous = tag
    return converted


def entity_type(tag: str) -> str | None:
    return None if tag == OUTSIDE else tag[2:]


def get_labels(examples: Sequence[NerExample]) -> list[str]:
    """The label list of a training set: `O` first, then the others sorted."""
    found = {tag for example in examples for tag in (example.labels or ())}
    return [OUTSIDE] + sorted(found - {OUTSIDE})


def count_entities(examples: Sequence[NerExample]) -> Counter:
    """Entities per type, counting IOB2 `B-` tags."""
    return Counter(tag[2:] for example in examples for tag in (example.labels or ()) if tag.startswith("B-"))


# -- reading ---------------------------------------------------------------------------------


def read_conll(path: str | os.PathLike, label_column: int | None = -1, set_type: str | None = None) -> list[NerExample]:
    """Sentences of a CoNLL column file, with IOB2 tags (see the module docstring).

    label_column: index of the tag column (negative counts from the end; default the last);
        None reads unlabelled text (first column only).
    set_type: the guid prefix (default: the file name), guids are `<set_type>-<sentence index>`.
    """
    path = Path(path)
    set_type = set_type or path.name
    try:
        with open_input(path, "check --data_dir and the file name") as handle:
            text = handle.read()
    except UnicodeDecodeError:
        raise DataError(f"{path}:{first_non_utf8_line(path)}: not valid UTF-8; re-save the file as UTF-8") from None

    examples: list[NerExample] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    columns: tuple[int, int] | None = None  # (count, line it was first seen on)

    def finish() -> None:
        nonlocal words, tags
        if words:
            examples.append(NerExample(f"{set_type}-{len(examples)}", words,
                                       iob1_to_iob2(tags) if label_column is not None else None, start))
        words, tags = [], []

    # Lines end at \n, \r\n or \r only: str.splitlines() would also end one at a form feed, U+2028 and
    # the like, and number every later line wrongly.
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        fields = line.split()
        if not fields:
            finish()
            continue
        if fields[0] == DOCSTART:
            finish()
            continue
        if label_column is not None:
            if columns is None:
                columns = (len(fields), number)
                if not -len(fields) <= label_column < len(fields):
                    raise DataError(f"{path}:{number}: label column {label_column} does not exist in a line of "
                                    f"{len(fields)} column(s); pick another label_column")
                if len(fields) < 2:
                    raise DataError(f"{path}:{number}: expected a token and a label column, got 1 column "
                                    f"({line.strip()!r}); give `token ... label` lines or read it without labels")
            elif len(fields) != columns[0]:
                raise DataError(f"{path}:{number}: expected {columns[0]} columns as on line {columns[1]}, got "
                                f"{len(fields)} ({line.strip()!r}); every word line needs the same columns")
            tag = fields[label_column]
            if tag != OUTSIDE and not _TAG.match(tag):
                raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE (IOB1 or IOB2 tags)")
            tags.append(tag)
        if not words:
            start = number
        words.append(fields[0])
    finish()
    return examples


def check_labels(examples: Sequence[NerExample], label_list: Sequence[str], path: str | os.PathLike) -> None:
    """Every tag of `examples` (read from `path`) must be one the model knows."""
    known = set(label_list)
    for example in examples:
        for i, tag in enumerate(example.labels or ()):
            if tag not in known:
                where = f"{path}:{example.line + i}" if example.line is not None else f"{path} ({example.guid})"
                raise DataError(f"{where}: label {tag!r} is not one of the model's {len(known)} labels "
                                f"({', '.join(label_list)}); they come from the training file")


# -- features --------------------------------------------------------------------------------


def word_pieces(tokenizer, word: str) -> list[str]:
    """The word's pieces; a word the tokenizer drops entirely (e.g. a control character) is [UNK],
    so that every word gets a prediction."""
    return tokenizer.tokenize(word) or ["[UNK]"]


def make_windows(piece_counts: Sequence[int], capacity: int, doc_stride: int) -> list[tuple[int, int]]:
    """Word spans [start, end) of at most `capacity` pieces each, covering every word (see the
    module docstring). Every count must be between 1 and capacity."""
    n = len(piece_counts)
    offsets = np.concatenate([[0], np.cumsum(piece_counts)]).tolist()
    if n == 0:
        return [(0, 0)]
    windows = []
    start = 0
    while True:
        end = start
        while end < n and offsets[end + 1] - offsets[start] <= capacity:
            end += 1
        windows.append((start, end))
        if end == n:
            return windows
        following = start + 1
        while following < end and offsets[following] < offsets[start] + doc_stride:
            following += 1
        start = following


def window_owners(piece_counts: Sequence[int], windows: Sequence[tuple[int, int]]) -> list[int]:
    """For every word, the window that predicts it: where it has the most context."""
    offsets = np.concatenate([[0], np.cumsum(piece_counts)]).tolist()
    best = [(-1.0, -1)] * len(piece_counts)
    for w, (start, end) in enumerate(windows):
        length = offsets[end] - offsets[start]
        for word in range(start, end):
            left = offsets[word] - offsets[start]
            right = offsets[end] - offsets[word + 1]
            score = min(left, right) + 0.01 * length
            if score > best[word][0]:
                best[word] = (score, w)
    return [w for _, w in best]


def convert_examples_to_features(examples: Sequence[NerExample], label_list: Sequence[str] | None,
                                 max_seq_length: int, tokenizer, doc_stride: int | None = None) -> list[NerFeature]:
    """One feature per window of every sentence (most sentences: one window), unpadded.

    label_list: the model's labels (index = class id); None, or examples without labels, give
        features without `labels`.
    doc_stride: pieces from one window's start to the next one's (default: half a window).
    """
    capacity = max_seq_length - 2
    if capacity < 1:
        raise DataError(f"max_seq_length={max_seq_length} leaves no room for a word beside [CLS] and [SEP]")
    doc_stride = doc_stride or max(1, capacity // 2)
    label_map = {label: i for i, label in enumerate(label_list)} if label_list is not None else None
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    features: list[NerFeature] = []
    cut_words = split_sentences = 0
    for index, example in enumerate(examples):
        pieces = [word_pieces(tokenizer, word) for word in example.words]
        for i, word_tokens in enumerate(pieces):
            if len(word_tokens) > capacity:  # the word keeps its first piece, so it is still predicted
                pieces[i] = word_tokens[:capacity]
                cut_words += 1
        counts = [len(p) for p in pieces]
        windows = make_windows(counts, capacity, doc_stride)
        owners = window_owners(counts, windows)
        split_sentences += len(windows) > 1
        with_labels = label_map is not None and example.labels is not None
        if with_labels:
            try:
                label_ids = [label_map[tag] for tag in example.labels]
            except KeyError as err:
                raise DataError(f"{example.guid}: label {err.args[0]!r} is not one of {', '.join(label_list)}") from None
        for w, (start, end) in enumerate(windows):
            piece_ids, word_ids, predict_words, labels = [], [-1], [-1], [IGNORE_INDEX]  # [CLS]'s entries
            for word in range(start, end):
                word_piece_ids = tokenizer.convert_tokens_to_ids(pieces[word])
                owned = owners[word] == w
                piece_ids += word_piece_ids
                word_ids += [word] * len(word_piece_ids)
                predict_words += [word if owned else -1] + [-1] * (len(word_piece_ids) - 1)
                if with_labels:
                    labels += [label_ids[word] if owned else IGNORE_INDEX] + [IGNORE_INDEX] * (len(word_piece_ids) - 1)
            ids, token_type_ids = pack(piece_ids, None, cls_id, sep_id)
            word_ids.append(-1)  # [SEP]'s entries
            predict_words.append(-1)
            labels.append(IGNORE_INDEX)
            features.append(NerFeature(
                input_ids=ids, attention_mask=[1] * len(ids), token_type_ids=token_type_ids,
                labels=labels if with_labels else None, example_index=index, word_ids=word_ids,
                predict_words=predict_words))
    if split_sentences:
        logger.info("%d of %d sentences are longer than max_seq_length=%d and were split into overlapping windows",
                    split_sentences, len(examples), max_seq_length)
    if cut_words:
        logger.warning("%d words have more than %d word pieces; only their first %d pieces are kept",
                       cut_words, capacity, capacity)
    return features


def align_predictions(features: Sequence[NerFeature], predictions: np.ndarray,
                      examples: Sequence[NerExample]) -> list[list[int]]:
    """Per-token class ids (features x tokens, in feature order; padding beyond a feature's length
    is ignored) -> one class id per word of every example."""
    words = [[-1] * len(example.words) for example in examples]
    if len(predictions) != len(features):
        raise ValueError(f"{len(predictions)} prediction rows for {len(features)} features")
    for row, feature in zip(predictions, features):
        target = words[feature.example_index]
        for position, word in enumerate(feature.predict_words):
            if word >= 0:
                target[word] = int(row[position])
    missing = [(i, w) for i, sentence in enumerate(words) for w, p in enumerate(sentence) if p < 0]
    if missing:
        raise ValueError(f"{len(missing)} words have no prediction, first (example, word) {missing[0]}: "
                         "the features do not belong to these examples")
    return words
