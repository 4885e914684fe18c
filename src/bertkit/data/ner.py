"""Named-entity data: CoNLL column files and JSONL records, tag schemes, word-piece alignment and windows.

Reading (`read_ner_file`; `read_conll` for column files). Two formats, told apart by the file's
extension (`.jsonl` / `.json`: JSONL, anything else: columns) unless `file_format` says:

* CoNLL columns: one word per line, its fields split on whitespace, and a blank line between
  sentences; `-DOCSTART-` lines separate documents and are not sentences. CoNLL-2003's English
  files have four columns, `token POS chunk NER`; a generic two-column `token label` file reads
  the same way, and so does Chinese NER with one character per line (`中 B-ORG`). The label is
  the last column unless `label_column` says otherwise (`None`: unlabelled text, the token column
  only). Every line of a file must have the same number of columns.
* JSONL, as transformers' datasets hold NER (`datasets.load_dataset("conll2003")` rows written out
  with `to_json`): one JSON object per line, `{"tokens": [...], "ner_tags": [...]}`, the tags as
  strings, or as integers that index a `label_list` (the data set's ClassLabel names). Other keys
  (`id`, `pos_tags`, ...) are ignored; the two key names can be changed.

Anything malformed (a line with other columns, a tag that is not `O` or `B-/I-/E-/S-TYPE`, a
record whose tags do not match its tokens, an integer tag without a label list) is a DataError
naming the file and the 1-based line.

Tag schemes (`detect_scheme`). A labelled file is IOB1 (CoNLL-2003's: `I-X` starts an entity,
`B-X` appears only where an entity follows another of the same type), IOB2 (every entity starts
with `B-X`) or BIOES (`S-X` a one-word entity, `E-X` an entity's last word). The scheme is
detected per file: BIOES when an `E-` or `S-` tag occurs (and then every tag must follow BIOES's
order, else the line is named), IOB1 when an `I-X` starts an entity, else IOB2. The model learns
IOB2 tags for IOB1 and IOB2 data (IOB1 is converted: `iob1_to_iob2`) and BIOES tags for BIOES
data; every file of a run is converted to the model's scheme (`to_scheme`), so a dev file may use
another scheme than the training file. The label list comes from the training file: `O` first,
then the others sorted (`get_labels`).

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

import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from bertkit.data.batching import InputFeatures
from bertkit.data.json_records import json_field, json_type_name
from bertkit.errors import ConfigError, DataError
from bertkit.io_utils import first_non_utf8_line, open_input
from bertkit.tokenization import pack

logger = logging.getLogger(__name__)

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"
IGNORE_INDEX = -100
_TAG = re.compile(r"^([BIES])-(\S+)$")
MODEL_SCHEMES = ("IOB2", "BIOES")  # the schemes a model's labels follow (IOB1 data is learnt as IOB2)
FORMATS = ("conll", "jsonl")
JSONL_SUFFIXES = (".jsonl", ".json")


@dataclass
class NerExample:
    """One sentence: its words and (IOB2) tags, and where it starts in its file."""

    guid: str
    words: list[str]
    labels: list[str] | None = None
    line: int | None = None  # 1-based line of the first word; in a column file word i is on line `line + i`
    one_line: bool = False  # True: every word is on `line` (a JSONL record)

    def word_line(self, i: int) -> int | None:
        """The line of word i in its file."""
        return None if self.line is None else self.line if self.one_line else self.line + i


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


def iob2_to_bioes(tags: Sequence[str]) -> list[str]:
    """IOB2 -> BIOES: an entity's last word becomes `E-X` (`S-X` when it is its only word)."""
    converted = []
    for i, tag in enumerate(tags):
        last = i + 1 == len(tags) or tags[i + 1] != "I-" + tag[2:]
        if tag == OUTSIDE or not last:
            converted.append(tag)
        else:
            converted.append(("S-" if tag.startswith("B-") else "E-") + tag[2:])
    return converted


def bioes_to_iob2(tags: Sequence[str]) -> list[str]:
    """BIOES -> IOB2: `S-X` becomes `B-X`, `E-X` becomes `I-X`."""
    return [{"S": "B", "E": "I"}.get(tag[0], tag[0]) + tag[1:] if tag != OUTSIDE else tag for tag in tags]


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """IOB1, IOB2 or BIOES (see the module docstring); a file without entities counts as IOB2."""
    if any(tag[:2] in ("E-", "S-") for tags in sentences for tag in tags):
        return "BIOES"
    for tags in sentences:
        previous = OUTSIDE
        for tag in tags:
            if tag.startswith("I-") and previous[2:] != tag[2:]:
                return "IOB1"
            previous = tag
    return "IOB2"


def bioes_error(tags: Sequence[str]) -> int | None:
    """The index of the first tag that breaks BIOES's order, if any: `I-X` and `E-X` continue a
    `B-X` or `I-X`, and a `B-X` or `I-X` is followed by `I-X` or `E-X`."""
    previous = OUTSIDE
    for i, tag in enumerate([*tags, OUTSIDE]):
        opened = previous[:2] in ("B-", "I-")
        if opened and tag not in ("I-" + previous[2:], "E-" + previous[2:]):
            return i if i < len(tags) else i - 1
        if not opened and tag[:2] in ("I-", "E-"):
            return i
        previous = tag
    return None


def to_scheme(tags: Sequence[str], scheme: str) -> list[str]:
    """IOB1, IOB2 or BIOES tags as the model's scheme (IOB2 or BIOES)."""
    if scheme not in MODEL_SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}; expected one of {', '.join(MODEL_SCHEMES)}")
    iob2 = bioes_to_iob2(tags) if any(tag[:2] in ("E-", "S-") for tag in tags) else iob1_to_iob2(tags)
    return iob2 if scheme == "IOB2" else iob2_to_bioes(iob2)


def model_scheme(detected: str | None) -> str:
    """The scheme a model learns from data in the `detected` scheme: BIOES stays, IOB1 and IOB2 give IOB2."""
    return "BIOES" if detected == "BIOES" else "IOB2"


def scheme_of_labels(labels: Sequence[str]) -> str:
    """The scheme a model's label list follows: BIOES when it has E- or S- tags, else IOB2."""
    return "BIOES" if any(label[:2] in ("E-", "S-") for label in labels) else "IOB2"


def entity_type(tag: str) -> str | None:
    return None if tag == OUTSIDE else tag[2:]


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word) of every entity in predicted tags of any scheme: `B-X` and `S-X`
    start an entity, `I-X` and `E-X` continue one of type X (and start one after anything else, as
    seqeval reads them), and an entity ends after its `E-X` or `S-X`."""
    spans: list[list] = []
    open_ = False
    for i, tag in enumerate(tags):
        kind = entity_type(tag)
        if kind is None:
            open_ = False
            continue
        if open_ and tag[0] in "IE" and spans[-1][0] == kind:
            spans[-1][2] = i + 1
        else:
            spans.append([kind, i, i + 1])
        open_ = tag[0] in "BI"
    return [tuple(span) for span in spans]


def get_labels(examples: Sequence[NerExample]) -> list[str]:
    """The label list of a training set: `O` first, then the others sorted."""
    found = {tag for example in examples for tag in (example.labels or ())}
    return [OUTSIDE] + sorted(found - {OUTSIDE})


def count_entities(examples: Sequence[NerExample]) -> Counter:
    """Entities per type, counting IOB2 `B-` tags."""
    return Counter(tag[2:] for example in examples for tag in (example.labels or ()) if tag.startswith("B-"))


# -- reading ---------------------------------------------------------------------------------


def file_format_of(path: str | os.PathLike, file_format: str | None = None) -> str:
    """`file_format` if given, else by the extension: .jsonl / .json are JSONL, anything else columns."""
    if file_format is not None:
        if file_format not in FORMATS:
            raise ConfigError(f"--file_format={file_format} is not one of {', '.join(FORMATS)}")
        return file_format
    return "jsonl" if Path(path).suffix.lower() in JSONL_SUFFIXES else "conll"


def read_ner_file(path: str | os.PathLike, labelled: bool = True, file_format: str | None = None,
                  label_column: int | str | None = None, text_column: str | None = None,
                  label_list: Sequence[str] | None = None, scheme: str | None = None,
                  set_type: str | None = None) -> tuple[list[NerExample], str | None]:
    """(sentences, the file's detected scheme) of a CoNLL column file or a JSONL file (module docstring).

    labelled: False reads words only (the file may still hold tags; a CoNLL file's first column).
    label_column: the CoNLL tag column (an int, negative from the end; default the last) or the
        JSONL key of the tags (default `ner_tags`); text_column: the JSONL key of the words
        (default `tokens`).
    label_list: names of integer JSONL tags (tag i is label_list[i]).
    scheme: the scheme the tags are returned in (IOB2 or BIOES); default the model scheme of the
        file's own (`model_scheme`). The detected scheme is None for unlabelled reading.
    set_type: the guid prefix (default: the file name), guids are `<set_type>-<sentence index>`.
    """
    path = Path(path)
    set_type = set_type or path.name
    if file_format_of(path, file_format) == "jsonl":
        examples = _read_jsonl(path, labelled, "tokens" if text_column is None else text_column,
                               "ner_tags" if label_column is None else label_column, label_list, set_type)
    else:
        if text_column is not None:
            raise ConfigError(f"--text_column={text_column} is for JSONL files; in the column file {path} the word is "
                              "the first column")
        column = -1 if label_column is None else label_column
        if labelled and not isinstance(column, int):
            raise ConfigError(f"--label_column={column} names a JSONL key, but {path} is read as a column file: give "
                              "the tag's column number (0-based, negative from the end) or --file_format=jsonl")
        examples = _read_columns(path, column if labelled else None, set_type)
    if not labelled:
        return examples, None
    detected = detect_scheme([e.labels for e in examples])
    if detected == "BIOES":
        for example in examples:
            bad = bioes_error(example.labels)
            if bad is not None:
                raise DataError(f"{path}:{example.word_line(bad)}: tag {example.labels[bad]!r} breaks the BIOES order "
                                f"of this file (after {example.labels[bad - 1] if bad else 'the sentence start'!r}): "
                                "I-X and E-X continue B-X or I-X, and B-X / I-X are followed by I-X or E-X")
    target = scheme or model_scheme(detected)
    for example in examples:
        example.labels = to_scheme(example.labels, target)
    return examples, detected


def read_conll(path: str | os.PathLike, label_column: int | None = -1, set_type: str | None = None) -> list[NerExample]:
    """Sentences of a CoNLL column file, with IOB2 tags (BIOES for a BIOES file); label_column None
    reads unlabelled text (the first column). See read_ner_file."""
    return read_ner_file(path, labelled=label_column is not None, file_format="conll", label_column=label_column,
                         set_type=set_type)[0]


def _read_text(path: Path) -> str:
    try:
        with open_input(path, "check --data_dir and the file name") as handle:
            return handle.read()
    except UnicodeDecodeError:
        raise DataError(f"{path}:{first_non_utf8_line(path)}: not valid UTF-8; re-save the file as UTF-8") from None


def _lines(text: str) -> list[str]:
    # Lines end at \n, \r\n or \r only: str.splitlines() would also end one at a form feed, U+2028 and
    # the like, and number every later line wrongly.
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _check_tag(tag: str, where: str) -> None:
    if tag != OUTSIDE and not _TAG.match(tag):
        raise DataError(f"{where}: tag {tag!r} is not O, B-TYPE, I-TYPE, E-TYPE or S-TYPE (IOB1, IOB2 or BIOES tags)")


def _read_columns(path: Path, label_column: int | None, set_type: str) -> list[NerExample]:
    text = _read_text(path)
    examples: list[NerExample] = []
    words: list[str] = []
    tags: list[str] = []
    start = 0
    columns: tuple[int, int] | None = None  # (count, line it was first seen on)

    def finish() -> None:
        nonlocal words, tags
        if words:
            examples.append(NerExample(f"{set_type}-{len(examples)}", words,
                                       tags if label_column is not None else None, start))
        words, tags = [], []

    for number, line in enumerate(_lines(text), 1):
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
            _check_tag(tag, f"{path}:{number}")
            tags.append(tag)
        if not words:
            start = number
        words.append(fields[0])
    finish()
    return examples


def _read_jsonl(path: Path, labelled: bool, text_key: str, label_key, label_list: Sequence[str] | None,
                set_type: str) -> list[NerExample]:
    if labelled and not isinstance(label_key, str):
        raise ConfigError(f"--label_column={label_key} is a column number, but {path} is read as JSONL: give the "
                          "key of the tags (default ner_tags)")
    examples: list[NerExample] = []
    empty = 0
    for number, line in enumerate(_lines(_read_text(path)), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(f"{where}: not a JSON object ({err}); a JSONL file holds one object per line") from None
        words = json_field(record, text_key, list, where, f"JSONL NER file with {text_key!r} and {label_key!r} lists")
        for i, word in enumerate(words):
            if not isinstance(word, str) or not word.strip():
                raise DataError(f"{where}: {text_key}[{i}] is {word!r}; every token must be a non-empty string")
        if not words:
            empty += 1
            continue
        tags = None
        if labelled:
            raw = json_field(record, label_key, list, where, f"labelled JSONL NER file (tags under {label_key!r})")
            if len(raw) != len(words):
                raise DataError(f"{where}: {len(words)} {text_key} but {len(raw)} {label_key}; every token needs a tag")
            tags = [_jsonl_tag(tag, i, where, label_key, label_list) for i, tag in enumerate(raw)]
        examples.append(NerExample(f"{set_type}-{len(examples)}", list(words), tags, number, one_line=True))
    if empty:
        logger.warning("%s: %d records with no tokens were skipped (nothing to tag)", path, empty)
    return examples


def _jsonl_tag(tag, i: int, where: str, key: str, label_list: Sequence[str] | None) -> str:
    if isinstance(tag, int) and not isinstance(tag, bool):
        if label_list is None:
            raise DataError(f"{where}: {key} are integers (class ids); give their names in order with --label_list "
                            "(e.g. --label_list=O,B-PER,I-PER,B-ORG,I-ORG,B-LOC,I-LOC,B-MISC,I-MISC for conll2003)")
        if not 0 <= tag < len(label_list):
            raise DataError(f"{where}: {key}[{i}] = {tag} is not a class id of the {len(label_list)} names of "
                            "--label_list")
        tag = label_list[tag]
    elif not isinstance(tag, str):
        raise DataError(f"{where}: {key}[{i}] is a JSON {json_type_name(type(tag))}; tags are strings, or integers "
                        "with --label_list")
    _check_tag(tag, f"{where}: {key}[{i}]")
    return tag


def check_labels(examples: Sequence[NerExample], label_list: Sequence[str], path: str | os.PathLike) -> None:
    """Every tag of `examples` (read from `path`) must be one the model knows."""
    known = set(label_list)
    for example in examples:
        for i, tag in enumerate(example.labels or ()):
            if tag not in known:
                line = example.word_line(i)
                where = f"{path}:{line}" if line is not None else f"{path} ({example.guid})"
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
