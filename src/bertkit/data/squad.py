"""SQuAD data the way Google's `run_squad.py` handles it: examples, doc-stride features, decoding, metric.

Names and semantics follow google-research/bert `run_squad.py` (`read_squad_examples`,
`convert_examples_to_features`, `_improve_answer_span`, `_check_is_max_context`,
`write_predictions`, `get_final_text`, `_get_best_indexes`) and the official SQuAD v1.1
`evaluate-v1.1.py` (`normalize_answer`, exact match, token F1):

* a context is split on whitespace (Google's four characters plus U+202F) into `doc_tokens`,
  and every character is mapped to its word (`char_to_word_offset`), so a character-offset
  answer becomes a word span; WordPiece runs on each word separately, which keeps the mapping
  back from pieces to words (`token_to_orig_map`) exact;
* a context longer than the window is cut into overlapping windows `doc_stride` pieces apart;
  a piece that sits in several windows is scored only in the one where it has the most context
  on both sides (`token_is_max_context`);
* in training, a window that does not contain the whole answer points its start and end at
  `[CLS]` (position 0), as does a SQuAD 2.0 unanswerable question;
* decoding ranks the candidate spans of ALL windows of a question together and projects the
  best WordPiece span back onto the original text (`get_final_text`).

Deliberate differences from Google's script, none of which changes a feature:

* Google raises unless a training question has exactly one answer; SQuAD dev files have
  several (one per annotator), and we fine-tune on dev articles, so training uses the first
  answer, as the HF processors do. All gold answer texts are kept in `SquadExample.answers`
  for evaluation.
* A malformed file or record is a `DataError` naming the file, the article and the question id,
  instead of a KeyError or IndexError; so is a repeated question id, which the evaluator would
  silently merge.
* `write_predictions` ranks only a window's real tokens, so predictions do not depend on how
  much padding the batch had (Google's logits always cover 384 padded positions).
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tqdm.auto import tqdm

from bertkit.data.batching import InputFeatures
from bertkit.data.json_records import json_field
from bertkit.errors import DataError
from bertkit.io_utils import atomic_write, open_input
from bertkit.tokenization import BasicTokenizer, input_lists, pack, whitespace_tokenize

logger = logging.getLogger(__name__)

# Google logs the first converted examples so that a wrong vocab or casing shows at a glance.
_NUM_EXAMPLES_TO_LOG = 5
# Below this many examples conversion takes about a second, so a progress bar would be noise.
_PROGRESS_BAR_MIN_EXAMPLES = 2000
# Google's first unique_id; it keeps feature ids apart from example indexes in logs.
_FIRST_UNIQUE_ID = 1000000000


@dataclass
class SquadExample:
    """A single question on a paragraph, for training or evaluation.

    For examples without an answer, the start and end position are -1 (SQuAD 2.0 impossible
    questions in training) or None (evaluation, where only `answers` is filled).

    Args:
      qas_id: the question id, the key of the predictions and of the evaluation.
      question_text: the question, untokenized.
      doc_tokens: the context split on whitespace; questions on one paragraph share the list.
      orig_answer_text: the training answer (the first gold answer), "" when impossible.
      start_position / end_position: the answer's first and last index into `doc_tokens`.
      is_impossible: a SQuAD 2.0 question without an answer in the context.
      answers: the texts of all gold answers, for evaluation (empty when the file has none).
    """

    qas_id: str
    question_text: str
    doc_tokens: list[str]
    orig_answer_text: str | None = None
    start_position: int | None = None
    end_position: int | None = None
    is_impossible: bool = False
    answers: list[str] = field(default_factory=list)


@dataclass
class SquadFeatures(InputFeatures):
    """One doc-stride window of one example: Google's run_squad `InputFeatures`.

    `input_ids`, `attention_mask`, `token_type_ids` (Google's `input_mask` and `segment_ids`) and,
    in training, `start_positions` and `end_positions` go to the model; the rest is bookkeeping
    that decoding needs to map logits back onto the example's text.

    Attributes:
      start_positions / end_positions: the answer's positions in `tokens` in training (Google's
        `start_position` / `end_position`); 0 ([CLS]) when the answer is not wholly in this window
        or the question is impossible; None in evaluation.
      unique_id: the id that ties this window to its `RawResult`.
      example_index: index of the window's `SquadExample` in the list that was converted.
      doc_span_index: which window of the example this is (0, 1, ...).
      tokens: the word pieces `[CLS] query [SEP] doc [SEP]`, unpadded.
      token_to_orig_map: position in `tokens` -> index into the example's `doc_tokens`, for
        the document pieces only.
      token_is_max_context: position in `tokens` -> whether this window gives the piece the most
        context of all windows (only such positions may start an answer).
    """

    unique_id: int
    example_index: int
    doc_span_index: int
    tokens: list[str]
    token_to_orig_map: dict[int, int]
    token_is_max_context: dict[int, bool]
    start_positions: int | None = None
    end_positions: int | None = None
    is_impossible: bool = False

    bookkeeping = ("unique_id", "example_index", "doc_span_index", "tokens", "token_to_orig_map",
                   "token_is_max_context", "is_impossible")


class RawResult(NamedTuple):
    """The model's logits for one feature; the logits may include padding positions."""

    unique_id: int
    start_logits: Sequence[float]
    end_logits: Sequence[float]


class SquadSplit(NamedTuple):
    """Examples of the first articles for training and of the rest for evaluation."""

    train_examples: list[SquadExample]
    eval_examples: list[SquadExample]
    eval_dataset: dict  # the evaluation articles as a SQuAD-format file, for `squad_evaluate`


# ---------------------------------------------------------------------------------------------
# Reading the JSON file.


def load_squad_dataset(input_file: str | os.PathLike) -> dict:
    """Reads a SQuAD-format JSON file: `{"version": ..., "data": [article, ...]}`."""
    path = Path(input_file)
    try:
        with open_input(path, "pass a SQuAD json file such as dev-v1.1.json") as reader:
            dataset = json.load(reader)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-save the file as UTF-8") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); is it a SQuAD json file?"
        ) from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to be SQuAD data; is it a SQuAD json file?") from None
    if not isinstance(dataset, dict) or not isinstance(dataset.get("data"), list):
        raise DataError(f'{path}: expected a JSON object with a "data" list of articles, as in SQuAD\'s train/dev files')
    return dataset


def write_squad_dataset(dataset: Mapping, output_file: str | os.PathLike) -> None:
    """Writes a SQuAD-format dataset (e.g. `SquadSplit.eval_dataset`) atomically, for the evaluator."""
    with atomic_write(output_file) as writer:
        json.dump(dataset, writer, ensure_ascii=False)
        writer.write("\n")


def _article_slice(article_range: slice | tuple[int, int] | None) -> slice:
    if article_range is None:
        return slice(None)
    if isinstance(article_range, slice):
        return article_range
    start, stop = article_range
    return slice(start, stop)


def _is_whitespace(c: str) -> bool:
    # U+202F (narrow no-break space) separates numbers from units in a few SQuAD contexts; Google
    # splits on it, and so must we for the word offsets to agree.
    return c in " \t\r\n" or ord(c) == 0x202F


def split_context(paragraph_text: str) -> tuple[list[str], list[int]]:
    """Google's whitespace split: (doc_tokens, char_to_word_offset).

    `char_to_word_offset[i]` is the word that character i belongs to; a whitespace character
    belongs to the word before it (-1 before the first word).
    """
    doc_tokens: list[str] = []
    char_to_word_offset: list[int] = []
    prev_is_whitespace = True
    for c in paragraph_text:
        if _is_whitespace(c):
            prev_is_whitespace = True
        else:
            if prev_is_whitespace:
                doc_tokens.append(c)
            else:
                doc_tokens[-1] += c
            prev_is_whitespace = False
        char_to_word_offset.append(len(doc_tokens) - 1)
    return doc_tokens, char_to_word_offset


def _field(record: Any, key: str, kind: type, where: str) -> Any:
    return json_field(record, key, kind, where, "SQuAD json file")


def _examples_from_articles(
    articles: Sequence, article_range: slice | tuple[int, int] | None, is_training: bool,
    version_2_with_negative: bool, path: Path
) -> list[SquadExample]:
    """The examples of the selected articles; errors name an article by its index in the file."""
    examples = []
    seen_ids: set[str] = set()
    num_skipped = 0
    for article_index in range(len(articles))[_article_slice(article_range)]:
        entry = articles[article_index]
        article_where = f"{path}: article {article_index}"
        for paragraph_index, paragraph in enumerate(_field(entry, "paragraphs", list, article_where)):
            paragraph_where = f"{article_where}, paragraph {paragraph_index}"
            paragraph_text = _field(paragraph, "context", str, paragraph_where)
            doc_tokens, char_to_word_offset = split_context(paragraph_text)

            for qa_index, qa in enumerate(_field(paragraph, "qas", list, paragraph_where)):
                qas_id = _field(qa, "id", str, f"{paragraph_where}, question {qa_index}")
                where = f"{paragraph_where}, question {qas_id}"
                if qas_id in seen_ids:
                    raise DataError(f"{where}: the id is used twice; question ids must be unique")
                seen_ids.add(qas_id)
                question_text = _field(qa, "question", str, where)
                is_impossible = _field(qa, "is_impossible", bool, where) if version_2_with_negative else False
                # Test files have no answers; training needs them (checked below).
                answers = _field(qa, "answers", list, where) if "answers" in qa or is_training else []
                answer_texts = [_field(answer, "text", str, f"{where}, answer {i}") for i, answer in enumerate(answers)]

                start_position = end_position = orig_answer_text = None
                if is_training and is_impossible:
                    start_position, end_position, orig_answer_text = -1, -1, ""
                elif is_training:
                    if not answers:
                        raise DataError(
                            f"{where}: a training question needs an answer; for SQuAD 2.0 files "
                            "set version_2_with_negative so that unanswerable questions are read as such"
                        )
                    orig_answer_text = answer_texts[0]
                    answer_offset = _field(answers[0], "answer_start", int, f"{where}, answer 0")
                    answer_length = len(orig_answer_text)
                    if answer_length == 0 or answer_offset < 0 or answer_offset + answer_length > len(paragraph_text):
                        raise DataError(
                            f"{where}, answer 0: answer_start={answer_offset} with a {answer_length}-character "
                            f"text does not lie inside the {len(paragraph_text)}-character context"
                        )
                    start_position = char_to_word_offset[answer_offset]
                    end_position = char_to_word_offset[answer_offset + answer_length - 1]
                    # Only answers whose text can be recovered from the document are kept; if
                    # not, answer_start is off or the text has odd Unicode, so skip the question.
                    actual_text = " ".join(doc_tokens[start_position : end_position + 1])
                    cleaned_answer_text = " ".join(whitespace_tokenize(orig_answer_text))
                    # A start on leading whitespace (word -1) or a blank answer is not found either.
                    if start_position < 0 or not cleaned_answer_text or actual_text.find(cleaned_answer_text) == -1:
                        logger.warning("Could not find answer of %s: '%s' vs. '%s'", qas_id, actual_text,
                                       cleaned_answer_text)
                        num_skipped += 1
                        continue

                examples.append(
                    SquadExample(
                        qas_id=qas_id,
                        question_text=question_text,
                        doc_tokens=doc_tokens,
                        orig_answer_text=orig_answer_text,
                        start_position=start_position,
                        end_position=end_position,
                        is_impossible=is_impossible,
                        answers=answer_texts,
                    )
                )
    if num_skipped:
        logger.warning("%s: skipped %d of %d questions whose answer could not be found in the context",
                       path, num_skipped, num_skipped + len(examples))
    return examples


def read_squad_examples(
    input_file: str | os.PathLike,
    is_training: bool,
    version_2_with_negative: bool = False,
    article_range: slice | tuple[int, int] | None = None,
) -> list[SquadExample]:
    """Read a SQuAD json file into a list of SquadExample.

    Args:
      is_training: fill the answer positions (of the first answer) and skip questions whose
        answer is not found in the context; in evaluation all questions are kept.
      version_2_with_negative: read SQuAD 2.0's `is_impossible`.
      article_range: only these articles, as a slice or (start, stop), e.g. (0, 38).
    """
    path = Path(input_file)
    articles = load_squad_dataset(path)["data"]
    return _examples_from_articles(articles, article_range, is_training, version_2_with_negative, path)


def split_articles(input_file: str | os.PathLike, n_train: int, version_2_with_negative: bool = False) -> SquadSplit:
    """Training examples from the first `n_train` articles, evaluation examples from the rest.

    E.g. `split_articles("dev-v1.1.json", 38)` fine-tunes on 38 of dev's 48 articles and keeps
    the last 10 (1,988 questions, with all their gold answers) for evaluation.
    """
    path = Path(input_file)
    dataset = load_squad_dataset(path)
    articles = dataset["data"]
    if not 0 < n_train < len(articles):
        raise DataError(f"{path}: has {len(articles)} articles, so n_train must be between 1 and "
                        f"{len(articles) - 1}, got {n_train}")
    train_examples = _examples_from_articles(articles, slice(0, n_train), True, version_2_with_negative, path)
    eval_examples = _examples_from_articles(articles, slice(n_train, None), False, version_2_with_negative, path)
    eval_dataset = {**dataset, "data": articles[n_train:]}
    return SquadSplit(train_examples, eval_examples, eval_dataset)


# ---------------------------------------------------------------------------------------------
# Examples to features.


class DocSpan(NamedTuple):
    """A window over the example's word pieces: `length` pieces from `start`."""

    start: int
    length: int


def _doc_spans(num_doc_tokens: int, max_tokens_for_doc: int, doc_stride: int) -> list[DocSpan]:
    """Google's sliding windows: each starts `doc_stride` pieces after the last, the final one
    ends at the end of the document."""
    doc_spans = []
    start_offset = 0
    while start_offset < num_doc_tokens:
        length = min(num_doc_tokens - start_offset, max_tokens_for_doc)
        doc_spans.append(DocSpan(start=start_offset, length=length))
        if start_offset + length == num_doc_tokens:
            break
        start_offset += min(length, doc_stride)
    return doc_spans


def _improve_answer_span(doc_tokens: Sequence[str], input_start: int, input_end: int, tokenizer,
                         orig_answer_text: str) -> tuple[int, int]:
    """Returns tokenized answer spans that better match the annotated answer.

    The annotation is character based, and we projected it onto whole words first. After
    WordPiece the answer may match a tighter span: for the answer "1895" in the word
    "(1895-1943).", the pieces are "( 1895 - 1943 ) ." and the exact answer is "1895". When no
    sub-span matches (the answer "Japan" inside the single piece "japanese") the word span stays.
    """
    tok_answer_text = " ".join(tokenizer.tokenize(orig_answer_text))
    for new_start in range(input_start, input_end + 1):
        for new_end in range(input_end, new_start - 1, -1):
            text_span = " ".join(doc_tokens[new_start : new_end + 1])
            if text_span == tok_answer_text:
                return new_start, new_end
    return input_start, input_end


def _check_is_max_context(doc_spans: Sequence[DocSpan], cur_span_index: int, position: int) -> bool:
    """Check if this is the 'max context' doc span for the token.

    A piece can be in several windows. Its score in a window is the *minimum* of its left and
    right context there (their sum is the same in every full window), plus a tie breaker that
    prefers longer windows; only the best-scoring window may predict an answer starting at it.
    E.g. with the windows "the man went to the", "to the store and bought" and "and bought a
    gallon of", "bought" has most context in the third (1 left, 3 right), not the second (4, 0).
    """
    best_score = None
    best_span_index = None
    for span_index, doc_span in enumerate(doc_spans):
        end = doc_span.start + doc_span.length - 1
        if position < doc_span.start or position > end:
            continue
        num_left_context = position - doc_span.start
        num_right_context = end - position
        score = min(num_left_context, num_right_context) + 0.01 * doc_span.length
        if best_score is None or score > best_score:
            best_score = score
            best_span_index = span_index
    return cur_span_index == best_span_index


def convert_examples_to_features(
    examples: Sequence[SquadExample],
    tokenizer,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    *,
    is_training: bool,
    pad_to_max_length: bool = False,
    progress: bool = True,
    log: bool = True,
) -> list[SquadFeatures]:
    """Converts examples to doc-stride windows `[CLS] query [SEP] doc [SEP]`, in example order.

    Args:
      tokenizer: anything with Google's `tokenize` and `convert_tokens_to_ids`.
      max_seq_length: the most pieces per window, the special tokens included.
      doc_stride: how far apart (in pieces) the windows over a long context start.
      max_query_length: questions are cut to this many pieces.
      is_training: fill `start_positions`/`end_positions` (0 = [CLS] where the window misses the
        answer); needs examples read with `is_training=True`.
      pad_to_max_length: zero-pad to `max_seq_length` as Google does; False returns unpadded
        lists for batches padded to their own longest row (dynamic padding).
      log: log the first examples' windows, as Google does (the pipeline turns it off).
    """
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be positive, got {doc_stride}")
    if max_seq_length < max_query_length + 4:
        # Room for [CLS], the query, [SEP], at least one document piece and [SEP].
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for the document after a "
                         f"{max_query_length}-piece query; raise it or lower max_query_length")

    features = []
    unique_id = _FIRST_UNIQUE_ID
    # Questions on one paragraph share its doc_tokens list: tokenize each paragraph once.
    last_doc_tokens = None
    show_bar = progress and len(examples) >= _PROGRESS_BAR_MIN_EXAMPLES
    for example_index, example in enumerate(tqdm(examples, desc="Converting examples", unit="ex",
                                                 disable=not show_bar)):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]

        if example.doc_tokens is not last_doc_tokens:
            last_doc_tokens = example.doc_tokens
            tok_to_orig_index: list[int] = []
            orig_to_tok_index: list[int] = []
            all_doc_tokens: list[str] = []
            for i, token in enumerate(example.doc_tokens):
                orig_to_tok_index.append(len(all_doc_tokens))
                for sub_token in tokenizer.tokenize(token):
                    tok_to_orig_index.append(i)
                    all_doc_tokens.append(sub_token)

        tok_start_position = tok_end_position = None
        if is_training and example.is_impossible:
            tok_start_position = tok_end_position = -1
        elif is_training:
            if example.start_position is None:
                raise ValueError(f"example {example.qas_id} has no answer position; read the examples "
                                 "with is_training=True to build training features")
            tok_start_position = orig_to_tok_index[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end_position = orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end_position = len(all_doc_tokens) - 1
            tok_start_position, tok_end_position = _improve_answer_span(
                all_doc_tokens, tok_start_position, tok_end_position, tokenizer, example.orig_answer_text)

        # The -3 accounts for [CLS], [SEP] and [SEP].
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans = _doc_spans(len(all_doc_tokens), max_tokens_for_doc, doc_stride)

        for doc_span_index, doc_span in enumerate(doc_spans):
            doc_offset = len(query_tokens) + 2  # the window's first document piece, after [CLS] query [SEP]
            window = range(doc_span.start, doc_span.start + doc_span.length)
            tokens, segment_ids = pack(query_tokens, [all_doc_tokens[i] for i in window], "[CLS]", "[SEP]")
            token_to_orig_map = {doc_offset + k: tok_to_orig_index[i] for k, i in enumerate(window)}
            token_is_max_context = {doc_offset + k: _check_is_max_context(doc_spans, doc_span_index, i)
                                    for k, i in enumerate(window)}

            input_ids, input_mask, segment_ids = input_lists(tokenizer, tokens, segment_ids,
                                                             max_seq_length if pad_to_max_length else None)

            start_position = end_position = None
            if is_training:
                # A window without the whole answer (and an impossible question) points at [CLS]:
                # there is nothing to predict in it.
                doc_start = doc_span.start
                doc_end = doc_span.start + doc_span.length - 1
                if example.is_impossible or not (doc_start <= tok_start_position and tok_end_position <= doc_end):
                    start_position = end_position = 0
                else:
                    start_position = tok_start_position - doc_start + doc_offset
                    end_position = tok_end_position - doc_start + doc_offset

            if log and example_index < _NUM_EXAMPLES_TO_LOG:
                _log_feature(unique_id, example_index, doc_span_index, tokens, start_position, end_position,
                             example.is_impossible and is_training)

            features.append(
                SquadFeatures(
                    unique_id=unique_id,
                    example_index=example_index,
                    doc_span_index=doc_span_index,
                    tokens=tokens,
                    token_to_orig_map=token_to_orig_map,
                    token_is_max_context=token_is_max_context,
                    input_ids=input_ids,
                    attention_mask=input_mask,
                    token_type_ids=segment_ids,
                    start_positions=start_position,
                    end_positions=end_position,
                    is_impossible=example.is_impossible,
                )
            )
            unique_id += 1
    return features


def _log_feature(unique_id, example_index, doc_span_index, tokens, start_position, end_position, impossible):
    logger.debug("*** Example ***")
    logger.debug("unique_id: %s, example_index: %s, doc_span_index: %s", unique_id, example_index, doc_span_index)
    logger.debug("tokens: %s", " ".join(tokens))
    if impossible:
        logger.debug("impossible example")
    elif start_position is not None:
        logger.debug("start_position: %d, end_position: %d, answer: %s", start_position, end_position,
                    " ".join(tokens[start_position : end_position + 1]))


# ---------------------------------------------------------------------------------------------
# Logits to answer text.


def _as_float_list(values) -> list[float]:
    """Tensors, numpy arrays and lists alike as a list of Python floats (JSON-serializable)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [float(v) for v in values]


def collect_raw_results(features: Sequence[SquadFeatures], start_logits, end_logits) -> list[RawResult]:
    """RawResults from logits in feature order, e.g. `Trainer.predict`'s (N, T) arrays.

    Each row may be longer than its feature (padding); only the feature's real tokens are kept.
    """
    if not (len(features) == len(start_logits) == len(end_logits)):
        raise ValueError(f"got {len(start_logits)} start and {len(end_logits)} end logit rows for "
                         f"{len(features)} features; predict on the features in their original order")
    results = []
    for feature, start_row, end_row in zip(features, start_logits, end_logits):
        n = len(feature.tokens)
        results.append(RawResult(feature.unique_id, _as_float_list(start_row[:n]), _as_float_list(end_row[:n])))
    return results


def _get_best_indexes(logits: Sequence[float], n_best_size: int) -> list[int]:
    """The indexes of the n-best logits, best first; ties keep the earlier index first."""
    return sorted(range(len(logits)), key=logits.__getitem__, reverse=True)[:n_best_size]


def _compute_softmax(scores: Sequence[float]) -> list[float]:
    """Compute softmax probability over raw logits."""
    if not scores:
        return []
    max_score = max(scores)
    exp_scores = [math.exp(score - max_score) for score in scores]
    total_sum = sum(exp_scores)
    return [score / total_sum for score in exp_scores]


def _space_free_index(text: str, position: int) -> int | None:
    """Where `text[position]` lands once the spaces are removed; None for a space or no character."""
    if not 0 <= position < len(text) or text[position] == " ":
        return None
    return position - text.count(" ", 0, position)


def get_final_text(pred_text: str, orig_text: str, do_lower_case: bool,
                   basic_tokenizer: BasicTokenizer | None = None) -> str:
    """Project the tokenized prediction back to the original text.

    `orig_text` holds the whole words of the predicted span, which may carry characters the
    answer should not: for pred_text "steve smith" and orig_text "Steve Smith's" we want
    "Steve Smith". `pred_text` itself is normalized (lower case, accents stripped), so it is no
    answer either. The heuristic: basic-tokenize `orig_text`, find `pred_text` in it, and if the
    two agree character for character once spaces are dropped, map the found span back onto
    `orig_text`. When any step fails, the whole words (`orig_text`) are the answer.
    """
    start, end = final_text_span(pred_text, orig_text, do_lower_case, basic_tokenizer)
    return orig_text[start:end]


def final_text_span(pred_text: str, orig_text: str, do_lower_case: bool,
                    basic_tokenizer: BasicTokenizer | None = None) -> tuple[int, int]:
    """get_final_text's answer as a (start, end) character span of `orig_text`."""
    tokenizer = basic_tokenizer or BasicTokenizer(do_lower_case=do_lower_case)
    tok_text = " ".join(tokenizer.tokenize(orig_text))
    whole = (0, len(orig_text))

    start_position = tok_text.find(pred_text)
    if start_position == -1:
        logger.debug("Unable to find text: '%s' in '%s'", pred_text, orig_text)
        return whole
    end_position = start_position + len(pred_text) - 1

    # orig_text's non-space characters, by position; the same count as tok_text's means the
    # characters align one to one (basic tokenization only adds spaces and changes case).
    orig_ns_to_s_map = [i for i, c in enumerate(orig_text) if c != " "]
    if len(orig_ns_to_s_map) != len(tok_text) - tok_text.count(" "):
        logger.debug("Length not equal after stripping spaces: '%s' vs '%s'", orig_text, tok_text)
        return whole

    ns_start_position = _space_free_index(tok_text, start_position)
    ns_end_position = _space_free_index(tok_text, end_position)
    if ns_start_position is None or ns_end_position is None:
        logger.debug("Couldn't map the start or end position of '%s' in '%s'", pred_text, orig_text)
        return whole
    return orig_ns_to_s_map[ns_start_position], orig_ns_to_s_map[ns_end_position] + 1


class _PrelimPrediction(NamedTuple):
    feature_index: int
    start_index: int
    end_index: int
    start_logit: float
    end_logit: float


class NbestPrediction(NamedTuple):
    text: str
    start_logit: float
    end_logit: float
    # Where `text` is: doc_tokens[doc_start] .. doc_tokens[doc_end], and in the string
    # " ".join(those tokens), characters [char_start, char_end). None for the null answer.
    doc_start: int | None = None
    doc_end: int | None = None
    char_start: int | None = None
    char_end: int | None = None


def _write_json(obj, output_file: str | os.PathLike) -> None:
    with atomic_write(output_file) as writer:
        writer.write(json.dumps(obj, indent=4) + "\n")


def write_predictions(
    all_examples: Sequence[SquadExample],
    all_features: Sequence[SquadFeatures],
    all_results: Iterable[RawResult],
    n_best_size: int = 20,
    max_answer_length: int = 30,
    do_lower_case: bool = True,
    output_prediction_file: str | os.PathLike | None = None,
    output_nbest_file: str | os.PathLike | None = None,
    version_2_with_negative: bool = False,
    null_score_diff_threshold: float = 0.0,
    output_null_log_odds_file: str | os.PathLike | None = None,
) -> dict[str, str]:
    """Decodes the logits into one answer per question: returns {qas_id: text} and writes files.

    For each example, the `n_best_size` best start and end positions of every window give the
    candidate spans; spans that leave the document, end before they start, are longer than
    `max_answer_length` pieces, or start at a piece whose max-context window is another are
    dropped. The rest are ranked by start + end logit across all windows, and mapped back onto
    the original text with `get_final_text`.

    Files (each skipped when its path is None, written atomically as Google's indented JSON):
    `output_prediction_file` {qas_id: text} (predictions.json), `output_nbest_file` {qas_id:
    [{text, probability, start_logit, end_logit}, ...]} (nbest_predictions.json) and, for
    SQuAD 2.0, `output_null_log_odds_file` {qas_id: null score - best non-null score}.

    With `version_2_with_negative`, the answer is "" when the null score (the smallest [CLS]
    start + end logit over the windows) beats the best span by more than
    `null_score_diff_threshold`.
    """
    answers = decode_predictions(all_examples, all_features, all_results, n_best_size, max_answer_length,
                                 do_lower_case, version_2_with_negative, null_score_diff_threshold)
    all_predictions = collections.OrderedDict((a.qas_id, a.text) for a in answers)
    if output_prediction_file is not None:
        logger.info("Writing predictions to: %s", output_prediction_file)
        _write_json(all_predictions, output_prediction_file)
    if output_nbest_file is not None:
        logger.info("Writing nbest to: %s", output_nbest_file)
        _write_json(collections.OrderedDict(
            (a.qas_id, [collections.OrderedDict(text=entry.text, probability=prob, start_logit=entry.start_logit,
                                                end_logit=entry.end_logit)
                        for entry, prob in zip(a.nbest, a.probabilities)]) for a in answers), output_nbest_file)
    if version_2_with_negative and output_null_log_odds_file is not None:
        _write_json(collections.OrderedDict((a.qas_id, a.score_diff) for a in answers), output_null_log_odds_file)
    return all_predictions


class SquadPrediction(NamedTuple):
    """One question's decoded answer: `text`, and the n-best candidates with their probabilities."""

    qas_id: str
    text: str
    nbest: list[NbestPrediction]
    probabilities: list[float]
    score_diff: float | None  # SQuAD 2.0: null score - best non-null score


def decode_predictions(all_examples: Sequence[SquadExample], all_features: Sequence[SquadFeatures],
                       all_results: Iterable[RawResult], n_best_size: int = 20, max_answer_length: int = 30,
                       do_lower_case: bool = True, version_2_with_negative: bool = False,
                       null_score_diff_threshold: float = 0.0) -> list[SquadPrediction]:
    """write_predictions' decoding without the files: one SquadPrediction per example, in order.
    Evaluation files and the question-answering pipeline both answer through this."""
    example_index_to_features = collections.defaultdict(list)
    for feature in all_features:
        example_index_to_features[feature.example_index].append(feature)
    unique_id_to_result = {result.unique_id: result for result in all_results}
    basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)

    answers = []

    for example_index, example in enumerate(all_examples):
        features = example_index_to_features[example_index]

        prelim_predictions = []
        # The smallest null ([CLS] start + end) score over the windows, and where it was.
        score_null = 1000000.0  # large and positive
        min_null_feature_index = 0
        null_start_logit = null_end_logit = 0.0
        for feature_index, feature in enumerate(features):
            result = unique_id_to_result.get(feature.unique_id)
            if result is None:
                raise ValueError(f"no RawResult for feature unique_id={feature.unique_id} (example "
                                 f"{example.qas_id}); predict on all features")
            # Only the real tokens: ranking padding positions would make the n-best depend on
            # the batch's padding, and a padding position can never be a valid span anyway.
            start_logits = _as_float_list(result.start_logits[: len(feature.tokens)])
            end_logits = _as_float_list(result.end_logits[: len(feature.tokens)])
            if version_2_with_negative:
                feature_null_score = start_logits[0] + end_logits[0]
                if feature_null_score < score_null:
                    score_null = feature_null_score
                    min_null_feature_index = feature_index
                    null_start_logit, null_end_logit = start_logits[0], end_logits[0]
            for start_index in _get_best_indexes(start_logits, n_best_size):
                for end_index in _get_best_indexes(end_logits, n_best_size):
                    # Spans starting in the question, at [CLS] or [SEP] are not answers.
                    if start_index not in feature.token_to_orig_map or end_index not in feature.token_to_orig_map:
                        continue
                    if not feature.token_is_max_context.get(start_index, False):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim_predictions.append(_PrelimPrediction(feature_index, start_index, end_index,
                                                                start_logits[start_index], end_logits[end_index]))

        if version_2_with_negative:
            prelim_predictions.append(
                _PrelimPrediction(min_null_feature_index, 0, 0, null_start_logit, null_end_logit))
        prelim_predictions.sort(key=lambda x: x.start_logit + x.end_logit, reverse=True)

        seen_predictions = set()
        nbest = []
        for pred in prelim_predictions:
            if len(nbest) >= n_best_size:
                break
            if pred.start_index > 0:  # a non-null prediction
                feature = features[pred.feature_index]
                tok_tokens = feature.tokens[pred.start_index : pred.end_index + 1]
                orig_doc_start = feature.token_to_orig_map[pred.start_index]
                orig_doc_end = feature.token_to_orig_map[pred.end_index]
                orig_tokens = example.doc_tokens[orig_doc_start : orig_doc_end + 1]
                # De-tokenize WordPieces that have been split off, and clean whitespace.
                tok_text = " ".join(tok_tokens).replace(" ##", "").replace("##", "")
                tok_text = " ".join(tok_text.split())
                orig_text = " ".join(orig_tokens)
                char_start, char_end = final_text_span(tok_text, orig_text, do_lower_case, basic_tokenizer)
                final_text = orig_text[char_start:char_end]
                if final_text in seen_predictions:
                    continue
                entry = NbestPrediction(final_text, pred.start_logit, pred.end_logit, orig_doc_start, orig_doc_end,
                                        char_start, char_end)
            else:
                final_text = ""
                entry = NbestPrediction("", pred.start_logit, pred.end_logit)
            seen_predictions.add(final_text)
            nbest.append(entry)

        # With SQuAD 2.0 the empty answer is always a candidate.
        if version_2_with_negative and "" not in seen_predictions:
            nbest.append(NbestPrediction("", null_start_logit, null_end_logit))
        # In very rare edge cases there is no valid span (e.g. an empty context): a nonce answer
        # keeps the files complete.
        if not nbest:
            nbest.append(NbestPrediction("empty", 0.0, 0.0))

        probs = _compute_softmax([entry.start_logit + entry.end_logit for entry in nbest])
        score_diff = None
        if not version_2_with_negative:
            text = nbest[0].text
        else:
            best_non_null_entry = next((entry for entry in nbest if entry.text), None)
            if best_non_null_entry is None:
                # No span at all (Google would crash here): abstain, as sure as can be.
                score_diff = math.inf
            else:
                score_diff = score_null - best_non_null_entry.start_logit - best_non_null_entry.end_logit
            # Predict "" iff the null score beats the best non-null score by more than the threshold.
            text = "" if score_diff > null_score_diff_threshold else best_non_null_entry.text
        answers.append(SquadPrediction(example.qas_id, text, nbest, probs, score_diff))
    return answers


# ---------------------------------------------------------------------------------------------
# The official SQuAD v1.1 metric.

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (evaluate-v1.1.py)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES_RE.sub(" ", s)
    return " ".join(s.split())


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 of the normalized texts (bag of words, so repeated words count)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def _gold_answers(dataset) -> Iterable[tuple[str, list[str]]]:
    """(question id, gold answer texts) of a dataset dict, a list of articles or of SquadExamples."""
    if isinstance(dataset, Mapping):
        dataset = _field(dataset, "data", list, "dataset")
    for article_index, item in enumerate(dataset):
        if isinstance(item, SquadExample):
            yield item.qas_id, item.answers
            continue
        where = f"article {article_index}"
        for paragraph_index, paragraph in enumerate(_field(item, "paragraphs", list, where)):
            for qa_index, qa in enumerate(_field(paragraph, "qas", list, f"{where}, paragraph {paragraph_index}")):
                qa_where = f"{where}, paragraph {paragraph_index}, question {qa_index}"
                qas_id = _field(qa, "id", str, qa_where)
                answers = _field(qa, "answers", list, f"{qa_where} ({qas_id})")
                yield qas_id, [_field(a, "text", str, f"{qa_where} ({qas_id})") for a in answers]


def squad_evaluate(dataset, predictions: Mapping[str, str]) -> dict[str, float]:
    """The official SQuAD v1.1 scores: {"exact_match": ..., "f1": ...}, both in percent.

    Each question scores the best EM and F1 over its gold answers; a question without a
    prediction scores 0 (as in evaluate-v1.1.py, which prints "Unanswered question ... will
    receive score 0"); predictions for other ids are ignored. A question without gold answers
    (SQuAD 2.0 unanswerable) scores 1 only for an empty prediction, as in evaluate-v2.0.py.

    Args:
      dataset: a SQuAD-format dict (`{"data": [...]}`), its list of articles, or SquadExamples
        (their `answers`).
      predictions: {qas_id: answer text}, as `write_predictions` returns it.
    """
    exact_match = f1 = 0.0
    total = 0
    num_unanswered = 0
    for qas_id, ground_truths in _gold_answers(dataset):
        total += 1
        if qas_id not in predictions:
            num_unanswered += 1
            continue
        prediction = predictions[qas_id]
        if not ground_truths:
            score = float(normalize_answer(prediction) == "")
            exact_match += score
            f1 += score
            continue
        exact_match += max(exact_match_score(prediction, truth) for truth in ground_truths)
        f1 += max(f1_score(prediction, truth) for truth in ground_truths)
    if total == 0:
        raise ValueError("the dataset has no questions to evaluate")
    if num_unanswered:
        logger.warning("%d of %d questions have no prediction and score 0", num_unanswered, total)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
