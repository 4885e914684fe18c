"""SQuAD reading, doc-stride features, decoding and the v1.1 metric, checked against run_squad.py semantics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bertkit.data.batching import FeatureDataset, PaddingCollator
from bertkit.data.squad import (
    RawResult,
    SquadExample,
    collect_raw_results,
    convert_examples_to_features,
    exact_match_score,
    f1_score,
    get_final_text,
    load_squad_dataset,
    normalize_answer,
    read_squad_examples,
    split_articles,
    split_context,
    squad_evaluate,
    write_predictions,
    write_squad_dataset,
)
from bertkit.errors import DataError
from bertkit.heads import BertForQuestionAnswering
from bertkit.tokenization import FullTokenizer
from tests.helpers import tiny_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "squad"
TINY_V1 = FIXTURES / "tiny-v1.1.json"
TINY_V2 = FIXTURES / "tiny-v2.0.json"
GOOGLE_WINDOWS = {"max_seq_length": 384, "doc_stride": 128, "max_query_length": 64}  # run_squad.py's defaults
# Small windows: the 71-piece Rivers context needs 8 of them, and some answers sit in two.
SMALL_WINDOWS = {"max_seq_length": 32, "doc_stride": 8, "max_query_length": 8}


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(FIXTURES / "vocab.txt", do_lower_case=True)


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def squad_file(tmp_path: Path, qas: list[dict], context: str = "Paris is in France.") -> Path:
    return write_json(tmp_path / "squad.json", {"version": "1.1", "data": [
        {"title": "A", "paragraphs": [{"context": "Nothing here.", "qas": []}]},
        {"title": "B", "paragraphs": [{"context": context, "qas": qas}]},
    ]})


def oracle_results(features) -> list[RawResult]:
    """Logits of 10 at the gold start and end of every window that holds the answer (at [CLS] for
    an impossible question) and 0 elsewhere: a perfect model."""
    results = []
    for feature in features:
        start_logits = [0.0] * len(feature.tokens)
        end_logits = [0.0] * len(feature.tokens)
        if feature.start_positions or feature.is_impossible:  # None (evaluation) and 0 ([CLS]) stay flat
            start_logits[feature.start_positions] = 10.0
            end_logits[feature.end_positions] = 10.0
        results.append(RawResult(feature.unique_id, start_logits, end_logits))
    return results


# ---------------------------------------------------------------------------------------------
# Reading examples.


def test_split_context_maps_every_character_to_its_word():
    doc_tokens, char_to_word_offset = split_context("  a  bc\u202fd\te ")
    assert doc_tokens == ["a", "bc", "d", "e"]
    # Whitespace belongs to the word before it; U+202F separates words, as in Google's reader.
    assert char_to_word_offset == [-1, -1, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3]


def test_training_examples_have_word_positions_of_the_first_answer():
    examples = read_squad_examples(TINY_V1, is_training=True)
    assert [e.qas_id for e in examples] == [f"sci-{i}" for i in range(1, 7)] + ["riv-1", "riv-2", "riv-3"]
    by_id = {e.qas_id: e for e in examples}
    curie = by_id["sci-3"]
    assert curie.doc_tokens[:4] == ["Marie", "Curie", "won", "two"]
    assert (curie.start_position, curie.end_position, curie.orig_answer_text) == (0, 1, "Marie Curie")
    assert curie.answers == ["Marie Curie", "Curie"]
    # "1903" lies inside the word "(1903-1911)."; the word span is that one word.
    year = by_id["sci-4"]
    assert year.doc_tokens[year.start_position] == "(1903-1911)." and year.start_position == year.end_position
    # Questions on one paragraph share its doc_tokens (conversion tokenizes each paragraph once).
    assert by_id["sci-3"].doc_tokens is by_id["sci-6"].doc_tokens
    assert not any(e.is_impossible for e in examples)


def test_evaluation_examples_keep_every_gold_answer_and_no_positions():
    examples = read_squad_examples(TINY_V1, is_training=False)
    assert len(examples) == 9
    assert all(e.start_position is None and e.orig_answer_text is None for e in examples)
    assert examples[5].answers == ["café", "Paris"]


def test_article_range_takes_a_slice_or_a_pair():
    assert [e.qas_id for e in read_squad_examples(TINY_V1, False, article_range=(1, 2))] == ["riv-1", "riv-2", "riv-3"]
    assert len(read_squad_examples(TINY_V1, False, article_range=slice(0, 1))) == 6
    assert len(read_squad_examples(TINY_V1, False, article_range=slice(-1, None))) == 3
    assert len(read_squad_examples(TINY_V1, False, article_range=slice(None, None, -1))) == 9


def test_article_indexes_in_errors_count_from_the_start_of_the_file(tmp_path):
    path = squad_file(tmp_path, [{"id": "q1", "answers": []}])
    with pytest.raises(DataError, match=r"article 1, paragraph 0, question q1: missing key 'question'"):
        read_squad_examples(path, False, article_range=(1, 2))


def test_unrecoverable_answer_is_skipped_with_a_warning_count(tmp_path, caplog):
    path = squad_file(tmp_path, [
        {"id": "good", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
        # answer_start points at "Paris", not at "Spain": Google logs "Could not find answer" and skips.
        {"id": "bad", "question": "Where?", "answers": [{"text": "Spain", "answer_start": 0}]},
    ])
    with caplog.at_level(logging.WARNING, logger="bertkit.data.squad"):
        examples = read_squad_examples(path, is_training=True)
    assert [e.qas_id for e in examples] == ["good"]
    assert "Could not find answer of bad: 'Paris' vs. 'Spain'" in caplog.text
    assert "skipped 1 of 2 questions" in caplog.text
    # Evaluation keeps every question: its gold answers are what they are.
    assert len(read_squad_examples(path, is_training=False)) == 2


def test_answer_found_inside_a_longer_word_is_kept(tmp_path):
    # Google only checks that the answer occurs in the words it touches.
    path = squad_file(tmp_path, [{"id": "q", "question": "Where?", "answers": [{"text": "Fran", "answer_start": 12}]}])
    (example,) = read_squad_examples(path, is_training=True)
    assert example.doc_tokens[example.start_position] == "France."


def test_squad_v2_impossible_questions(tokenizer):
    examples = read_squad_examples(TINY_V2, is_training=True, version_2_with_negative=True)
    impossible = examples[1]
    assert impossible.is_impossible and (impossible.start_position, impossible.end_position) == (-1, -1)
    assert impossible.orig_answer_text == "" and impossible.answers == []
    features = convert_examples_to_features(examples, tokenizer, is_training=True)
    assert [(f.start_positions, f.end_positions) for f in features if f.is_impossible] == [(0, 0)]
    # Read as SQuAD 1.1, the answerless question cannot be trained on.
    with pytest.raises(DataError, match="moon-2: a training question needs an answer; .*version_2_with_negative"):
        read_squad_examples(TINY_V2, is_training=True)


def test_training_on_a_dev_file_uses_the_first_of_several_answers(tmp_path):
    path = squad_file(tmp_path, [{"id": "q", "question": "Where?", "answers": [
        {"text": "France", "answer_start": 12}, {"text": "Paris", "answer_start": 0}]}])
    (example,) = read_squad_examples(path, is_training=True)
    assert example.orig_answer_text == "France" and example.answers == ["France", "Paris"]


# ---------------------------------------------------------------------------------------------
# Malformed input.


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n  {"title": "x",,}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json:2:\d+: not valid JSON"):
        read_squad_examples(path, False)


@pytest.mark.parametrize("content, message", [
    ([], r'expected a JSON object with a "data" list'),
    ({"version": "1.1"}, r'expected a JSON object with a "data" list'),
    ({"data": [{"title": "x"}]}, r"article 0: missing key 'paragraphs'"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, r"article 0, paragraph 0: missing key 'context'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]},
     r"article 0, paragraph 0, question 0: missing key 'id'"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": ["q"]}]}]},
     r"article 0, paragraph 0, question 0: expected a JSON object, found string"),
    ({"data": [{"paragraphs": [{"context": 7, "qas": []}]}]}, r"article 0, paragraph 0: 'context' must be a JSON string, found integer"),
])
def test_malformed_records_name_file_and_place(tmp_path, content, message):
    path = write_json(tmp_path / "bad.json", content)
    with pytest.raises(DataError, match=r"bad\.json: " + message):
        read_squad_examples(path, False)


@pytest.mark.parametrize("qa, message", [
    ({"id": "q7", "question": "Where?"}, r"question q7: missing key 'answers'"),
    ({"id": "q7", "question": "Where?", "answers": [{"text": "France"}]}, r"question q7, answer 0: missing key 'answer_start'"),
    ({"id": "q7", "question": "Where?", "answers": [{"answer_start": 3}]}, r"question q7, answer 0: missing key 'text'"),
    ({"id": "q7", "question": "Where?", "answers": [{"text": "France", "answer_start": True}]},
     r"question q7, answer 0: 'answer_start' must be a JSON integer, found boolean"),
    ({"id": "q7", "question": "Where?", "answers": [{"text": "France", "answer_start": 40}]},
     r"question q7, answer 0: answer_start=40 with a 6-character text does not lie inside the 19-character context"),
    ({"id": "q7", "question": "Where?", "answers": [{"text": "", "answer_start": 0}]}, r"question q7, answer 0: answer_start=0 with a 0-character"),
])
def test_malformed_training_answers(tmp_path, qa, message):
    with pytest.raises(DataError, match=r"squad\.json: article 1, paragraph 0, " + message):
        read_squad_examples(squad_file(tmp_path, [qa]), is_training=True)


def test_evaluation_needs_no_answers_but_checks_the_ones_present(tmp_path):
    (example,) = read_squad_examples(squad_file(tmp_path, [{"id": "q", "question": "Where?"}]), is_training=False)
    assert example.answers == []
    with pytest.raises(DataError, match="question q, answer 0: missing key 'text'"):
        read_squad_examples(squad_file(tmp_path, [{"id": "q", "question": "?", "answers": [{}]}]), is_training=False)


def test_repeated_question_id_and_missing_is_impossible(tmp_path):
    qa = {"id": "dup", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]}
    with pytest.raises(DataError, match="question dup: the id is used twice"):
        read_squad_examples(squad_file(tmp_path, [qa, qa]), is_training=False)
    with pytest.raises(DataError, match="question dup: missing key 'is_impossible'"):
        read_squad_examples(squad_file(tmp_path, [qa]), is_training=True, version_2_with_negative=True)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.json: file not found"):
        read_squad_examples(tmp_path / "nope.json", False)


# ---------------------------------------------------------------------------------------------
# Features.


def test_feature_layout_cls_query_sep_doc_sep(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)
    feature = convert_examples_to_features(examples[:1], tokenizer, is_training=True)[0]
    query = ["what", "turns", "sun", "##light", "into", "sugar", "?"]
    doc = ["photo", "##syn", "##thesis", "turns", "sun", "##light", "into", "sugar", "inside", "the", "leaves",
           "of", "green", "plants", "."]
    assert feature.tokens == ["[CLS]", *query, "[SEP]", *doc, "[SEP]"]
    assert feature.input_ids == tokenizer.convert_tokens_to_ids(feature.tokens)
    assert feature.token_type_ids == [0] * 9 + [1] * 16 and feature.attention_mask == [1] * 25
    # Pieces map to the word they came from: "photo ##syn ##thesis" are all word 0.
    assert feature.token_to_orig_map == {9: 0, 10: 0, 11: 0, 12: 1, 13: 2, 14: 2, 15: 3, 16: 4, 17: 5, 18: 6,
                                         19: 7, 20: 8, 21: 9, 22: 10, 23: 10}
    assert all(feature.token_is_max_context.values()) and set(feature.token_is_max_context) == set(range(9, 24))
    # The answer spans all three pieces of its word.
    assert (feature.start_positions, feature.end_positions) == (9, 11)
    assert (feature.unique_id, feature.example_index, feature.doc_span_index) == (1000000000, 0, 0)
    assert feature.model_inputs() == {"input_ids": feature.input_ids, "attention_mask": feature.attention_mask,
                                      "token_type_ids": feature.token_type_ids, "start_positions": 9,
                                      "end_positions": 11}


def test_answer_narrows_to_the_pieces_that_match(tokenizer):
    # "(1903-1911)." is one word but six pieces; the answer "1903" is exactly one of them.
    examples = read_squad_examples(TINY_V1, is_training=True)
    feature = convert_examples_to_features(examples, tokenizer, is_training=True)[3]
    assert feature.tokens[feature.start_positions - 1 : feature.end_positions + 2] == ["(", "1903", "-"]
    # A lower-cased, accent-stripped answer still matches: "café." -> "cafe ." -> "cafe".
    feature = convert_examples_to_features(examples, tokenizer, is_training=True)[5]
    assert feature.tokens[feature.start_positions : feature.end_positions + 1] == ["cafe"]


def test_padding_is_google_zero_padding(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=False)
    short = convert_examples_to_features(examples, tokenizer, is_training=False)
    padded = convert_examples_to_features(examples, tokenizer, is_training=False, pad_to_max_length=True)
    for s, p in zip(short, padded):
        n = len(s.tokens)
        assert len(s.input_ids) == n and len(p.input_ids) == len(p.attention_mask) == len(p.token_type_ids) == 384
        assert p.input_ids[:n] == s.input_ids and p.input_ids[n:] == [0] * (384 - n)
        assert p.attention_mask == [1] * n + [0] * (384 - n) and p.token_type_ids[n:] == [0] * (384 - n)
        assert s.start_positions is None and "start_positions" not in s.model_inputs()


def test_long_context_gets_doc_stride_windows(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    rivers = [f for f in features if examples[f.example_index].qas_id == "riv-1"]
    doc_pieces = [p for word in examples[6].doc_tokens for p in tokenizer.tokenize(word)]
    assert len(doc_pieces) == 71 and len(rivers) == 8
    assert [f.doc_span_index for f in rivers] == list(range(8))
    assert all(len(f.tokens) <= 32 for f in rivers)
    query_length = rivers[0].tokens.index("[SEP]") - 1
    window = 32 - query_length - 3  # 21 pieces
    windows = []
    for f in rivers:
        first = min(f.token_to_orig_map)
        assert f.tokens[first - 1] == f.tokens[-1] == "[SEP]" and set(f.token_type_ids[first:]) == {1}
        windows.append(f.tokens[first:-1])
    # Window k holds pieces [8k, 8k + 21); the last one (from 56) ends at the end of the document.
    for k, pieces in enumerate(windows[:-1]):
        assert pieces == doc_pieces[8 * k : 8 * k + window]
    assert windows[-1] == doc_pieces[56:]
    # Every piece is the max-context piece of exactly one window.
    owners = {}
    for f in rivers:
        first = min(f.token_to_orig_map)
        for position, is_max in f.token_is_max_context.items():
            if is_max:
                piece = 8 * f.doc_span_index + position - first
                assert piece not in owners
                owners[piece] = f.doc_span_index
    assert sorted(owners) == list(range(71))
    # "Nile" is only in the first window; the other windows point at [CLS].
    assert rivers[0].tokens[rivers[0].start_positions] == "nile"
    assert [(f.start_positions, f.end_positions) for f in rivers[1:]] == [(0, 0)] * 7


def test_query_is_cut_to_max_query_length(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=False)[:1]
    (feature,) = convert_examples_to_features(examples, tokenizer, max_query_length=3, is_training=False)
    assert feature.tokens[:5] == ["[CLS]", "what", "turns", "sun", "[SEP]"]


def test_window_must_leave_room_for_the_document(tokenizer):
    with pytest.raises(ValueError, match="leaves no room for the document"):
        convert_examples_to_features([], tokenizer, max_seq_length=67, max_query_length=64, is_training=False)
    with pytest.raises(ValueError, match="doc_stride must be positive"):
        convert_examples_to_features([], tokenizer, doc_stride=0, is_training=False)


def test_training_features_need_training_examples(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=False)
    with pytest.raises(ValueError, match="sci-1 has no answer position; read the examples with is_training=True"):
        convert_examples_to_features(examples, tokenizer, is_training=True)


# A transcription of Google's convert_examples_to_features (padded), for comparison.
def google_convert_examples_to_features(examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training):
    out = []
    for example_index, example in enumerate(examples):
        query_tokens = tokenizer.tokenize(example.question_text)[:max_query_length]
        tok_to_orig_index, orig_to_tok_index, all_doc_tokens = [], [], []
        for i, token in enumerate(example.doc_tokens):
            orig_to_tok_index.append(len(all_doc_tokens))
            for sub_token in tokenizer.tokenize(token):
                tok_to_orig_index.append(i)
                all_doc_tokens.append(sub_token)
        if is_training and not example.is_impossible:
            tok_start = orig_to_tok_index[example.start_position]
            if example.end_position < len(example.doc_tokens) - 1:
                tok_end = orig_to_tok_index[example.end_position + 1] - 1
            else:
                tok_end = len(all_doc_tokens) - 1
            answer = " ".join(tokenizer.tokenize(example.orig_answer_text))
            spans = [(s, e) for s in range(tok_start, tok_end + 1) for e in range(tok_end, s - 1, -1)
                     if " ".join(all_doc_tokens[s : e + 1]) == answer]
            tok_start, tok_end = spans[0] if spans else (tok_start, tok_end)
        max_tokens_for_doc = max_seq_length - len(query_tokens) - 3
        doc_spans, start_offset = [], 0
        while start_offset < len(all_doc_tokens):
            length = min(len(all_doc_tokens) - start_offset, max_tokens_for_doc)
            doc_spans.append((start_offset, length))
            if start_offset + length == len(all_doc_tokens):
                break
            start_offset += min(length, doc_stride)

        def is_max_context(cur_span_index, position, doc_spans=doc_spans):
            best_score, best_index = None, None
            for span_index, (start, length) in enumerate(doc_spans):
                end = start + length - 1
                if start <= position <= end:
                    score = min(position - start, end - position) + 0.01 * length
                    if best_score is None or score > best_score:
                        best_score, best_index = score, span_index
            return cur_span_index == best_index

        for doc_span_index, (start, length) in enumerate(doc_spans):
            tokens = ["[CLS]", *query_tokens, "[SEP]"]
            segment_ids = [0] * len(tokens)
            token_to_orig_map, token_is_max_context = {}, {}
            for i in range(start, start + length):
                token_to_orig_map[len(tokens)] = tok_to_orig_index[i]
                token_is_max_context[len(tokens)] = is_max_context(doc_span_index, i)
                tokens.append(all_doc_tokens[i])
                segment_ids.append(1)
            tokens.append("[SEP]")
            segment_ids.append(1)
            input_ids = tokenizer.convert_tokens_to_ids(tokens)
            input_mask = [1] * len(input_ids)
            padding = [0] * (max_seq_length - len(input_ids))
            positions = (None, None)
            if is_training:
                positions = (0, 0)
                if not example.is_impossible and start <= tok_start and tok_end <= start + length - 1:
                    offset = len(query_tokens) + 2 - start
                    positions = (tok_start + offset, tok_end + offset)
            out.append((example_index, doc_span_index, tokens, token_to_orig_map, token_is_max_context,
                        input_ids + padding, input_mask + padding, segment_ids + padding, *positions))
    return out


def as_google_tuple(f):
    return (f.example_index, f.doc_span_index, f.tokens, f.token_to_orig_map, f.token_is_max_context, f.input_ids,
            f.attention_mask, f.token_type_ids, f.start_positions, f.end_positions)


@pytest.mark.parametrize("windows", [GOOGLE_WINDOWS, SMALL_WINDOWS,
                                     {"max_seq_length": 20, "doc_stride": 3, "max_query_length": 4}])
@pytest.mark.parametrize("is_training", [True, False])
def test_features_match_google_on_the_fixtures(tokenizer, windows, is_training):
    examples = (read_squad_examples(TINY_V1, is_training)
                + read_squad_examples(TINY_V2, is_training, version_2_with_negative=True))
    ours = convert_examples_to_features(examples, tokenizer, **windows, is_training=is_training, pad_to_max_length=True)
    google = google_convert_examples_to_features(examples, tokenizer, **windows, is_training=is_training)
    assert len(ours) == len(google) >= len(examples)
    assert [as_google_tuple(f) for f in ours] == google
    assert [f.unique_id for f in ours] == list(range(1000000000, 1000000000 + len(ours)))


# ---------------------------------------------------------------------------------------------
# Decoding.


@pytest.mark.parametrize("windows", [{}, SMALL_WINDOWS])
@pytest.mark.parametrize("do_lower_case", [True, False])
def test_oracle_logits_decode_to_the_gold_answer(tmp_path, windows, do_lower_case):
    tokenizer = FullTokenizer(FIXTURES / "vocab.txt", do_lower_case=do_lower_case)
    examples = read_squad_examples(TINY_V1, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, **windows, is_training=True)
    predictions = write_predictions(examples, features, oracle_results(features), do_lower_case=do_lower_case,
                                    output_prediction_file=tmp_path / "predictions.json",
                                    output_nbest_file=tmp_path / "nbest_predictions.json")
    # Exactly the annotated text, casing and accents included: "Marie Curie", "1903", "café".
    assert predictions == {e.qas_id: e.orig_answer_text for e in examples}
    assert json.loads((tmp_path / "predictions.json").read_text(encoding="utf-8")) == predictions
    assert squad_evaluate(load_squad_dataset(TINY_V1), predictions) == {"exact_match": 100.0, "f1": 100.0}


def test_nbest_file_and_atomic_writes(tmp_path, tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    predictions = write_predictions(examples, features, oracle_results(features), n_best_size=5,
                                    output_prediction_file=tmp_path / "out" / "predictions.json",
                                    output_nbest_file=tmp_path / "out" / "nbest_predictions.json")
    nbest = json.loads((tmp_path / "out" / "nbest_predictions.json").read_text(encoding="utf-8"))
    assert list(nbest) == list(predictions) == [e.qas_id for e in examples]
    for qas_id, entries in nbest.items():
        assert 1 <= len(entries) <= 5 and entries[0]["text"] == predictions[qas_id]
        assert list(entries[0]) == ["text", "probability", "start_logit", "end_logit"]
        assert sum(e["probability"] for e in entries) == pytest.approx(1.0)
        assert len({e["text"] for e in entries}) == len(entries)  # one entry per distinct text
        scores = [e["start_logit"] + e["end_logit"] for e in entries]
        assert scores == sorted(scores, reverse=True) and scores[0] == 20.0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nbest_predictions.json", "predictions.json"]


def test_answers_are_ranked_across_windows_and_only_from_max_context_positions(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)[8:]  # riv-3: "in the green hills"
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    holding = [f for f in features if f.start_positions > 0]
    assert [f.doc_span_index for f in holding] == [5, 6]
    results = {r.unique_id: r for r in oracle_results(features)}
    assert write_predictions(examples, features, results.values()) == {"riv-3": "in the green hills"}
    # "in" has more context in window 5 (12 left, 8 right) than in window 6 (4 left, 16 right), so
    # window 6 may not start an answer there, however high its logits.
    assert [f.token_is_max_context[f.start_positions] for f in holding] == [True, False]
    window_6 = results[holding[1].unique_id]
    window_6.start_logits[holding[1].start_positions] = 50.0
    window_6.end_logits[holding[1].start_positions + 2] = 50.0  # "in the green"
    assert write_predictions(examples, features, results.values()) == {"riv-3": "in the green hills"}
    # A better-scoring span in another window wins: windows compete on start + end logit.
    first_window = features[0]
    first_doc_position = min(first_window.token_to_orig_map)
    results[first_window.unique_id].start_logits[first_doc_position] = 30.0
    results[first_window.unique_id].end_logits[first_doc_position] = 30.0
    assert write_predictions(examples, features, results.values()) == {"riv-3": "The"}


def test_invalid_spans_are_never_predicted(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)[:1]
    (feature,) = convert_examples_to_features(examples, tokenizer, is_training=True)
    n = len(feature.tokens)  # 9 "photo", 10 "##syn", 11 "##thesis", 12 "turns", n - 1 [SEP]

    def predict(starts, ends, **kwargs):
        start_logits, end_logits = [0.0] * n, [0.0] * n
        for position, logit in starts.items():
            start_logits[position] = logit
        for position, logit in ends.items():
            end_logits[position] = logit
        return write_predictions(examples, [feature], [RawResult(feature.unique_id, start_logits, end_logits)],
                                 **kwargs)["sci-1"]

    # The best-scoring pair (10 + 10) is invalid each time; the valid runner-up scores 17.5.
    assert predict({2: 10.0, 12: 7.5}, {12: 10.0}) == "turns"  # starts in the question
    assert predict({12: 10.0}, {9: 10.0, 12: 7.5}) == "turns"  # ends before it starts
    assert predict({9: 10.0}, {12: 10.0, 11: 7.5}, max_answer_length=3) == "Photosynthesis"  # 4 pieces
    assert predict({9: 10.0}, {12: 10.0, 11: 7.5}, max_answer_length=4) == "Photosynthesis turns"
    assert predict({9: 10.0}, {n - 1: 10.0, 11: 7.5}) == "Photosynthesis"  # ends at [SEP]


def test_padding_logits_do_not_change_predictions(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    padded = [RawResult(r.unique_id, [*r.start_logits, *[99.0] * 40], np.array([*r.end_logits, *[99.0] * 40]))
              for r in oracle_results(features)]
    assert write_predictions(examples, features, padded) == {e.qas_id: e.orig_answer_text for e in examples}


def test_missing_result_is_an_error(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=False)
    features = convert_examples_to_features(examples, tokenizer, is_training=False)
    with pytest.raises(ValueError, match="no RawResult for feature unique_id=1000000008 .*riv-3"):
        write_predictions(examples, features, oracle_results(features[:8]))


def test_example_without_features_gets_googles_nonce_answer(tokenizer):
    example = SquadExample("empty", "What?", doc_tokens=[])
    assert convert_examples_to_features([example], tokenizer, is_training=False) == []
    assert write_predictions([example], [], []) == {"empty": "empty"}


def test_squad_v2_decoding_abstains_on_impossible_questions(tmp_path, tokenizer):
    examples = read_squad_examples(TINY_V2, is_training=True, version_2_with_negative=True)
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    results = oracle_results(features)
    odds_file = tmp_path / "null_odds.json"
    predictions = write_predictions(examples, features, results, version_2_with_negative=True,
                                    output_null_log_odds_file=odds_file)
    assert predictions == {"moon-1": "The Moon", "moon-2": "", "moon-3": "once a month"}
    odds = json.loads(odds_file.read_text(encoding="utf-8"))
    assert odds["moon-1"] < 0 < odds["moon-2"]
    # A threshold above the impossible question's margin makes it answer after all.
    answered = write_predictions(examples, features, results, version_2_with_negative=True,
                                 null_score_diff_threshold=odds["moon-2"] + 1)
    assert answered["moon-2"] != "" and answered["moon-1"] == "The Moon"
    assert squad_evaluate(examples, predictions) == {"exact_match": 100.0, "f1": 100.0}


def test_collect_raw_results_trims_padding_of_any_array_type(tokenizer):
    examples = read_squad_examples(TINY_V1, is_training=False)
    features = convert_examples_to_features(examples, tokenizer, is_training=False)
    width = max(len(f.tokens) for f in features) + 3
    start = torch.arange(len(features) * width, dtype=torch.float32).reshape(len(features), width)
    results = collect_raw_results(features, start, (-start).numpy())
    for feature, result, row in zip(features, results, start):
        assert result.unique_id == feature.unique_id
        assert result.start_logits == row[: len(feature.tokens)].tolist()
        assert result.end_logits == [-x for x in result.start_logits]
        assert all(type(x) is float for x in result.start_logits + result.end_logits)
    with pytest.raises(ValueError, match="got 2 start and 2 end logit rows for 9 features"):
        collect_raw_results(features, start[:2], start[:2])


def test_tiny_model_end_to_end(tokenizer):
    """Features -> FeatureDataset -> PaddingCollator -> BertForQuestionAnswering -> RawResults -> answers."""
    torch.manual_seed(0)
    examples = read_squad_examples(TINY_V1, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, **SMALL_WINDOWS, is_training=True)
    model = BertForQuestionAnswering(tiny_config(vocab_size=len(tokenizer.vocab), max_position_embeddings=32)).eval()
    dataset = FeatureDataset(features)
    collate = PaddingCollator()
    start_rows, end_rows = [], []
    with torch.no_grad():
        for begin in range(0, len(dataset), 4):
            batch = collate([dataset[i] for i in range(begin, min(begin + 4, len(dataset)))])
            output = model(**batch)
            assert output.loss is not None and torch.isfinite(output.loss)
            start_rows += list(output.start_logits)
            end_rows += list(output.end_logits)
    predictions = write_predictions(examples, features, collect_raw_results(features, start_rows, end_rows))
    assert list(predictions) == [e.qas_id for e in examples]
    for example in examples:
        assert predictions[example.qas_id] and predictions[example.qas_id] in " ".join(example.doc_tokens)


# Random single-spaced contexts of vocabulary words, capitalized words, punctuated words and an
# unknown word, with an answer of whole words: the oracle must give it back exactly.
WORD_POOL = ["the", "river", "Nile", "grows", "photosynthesis", "sunlight", "Farmers", "(1903-1911).", "café,",
             "Paris.", "zebra", "in", "green", "hills", "Curie's", "a", "month"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.sampled_from(WORD_POOL), min_size=1, max_size=60), data=st.data(),
       stride=st.integers(1, 12), max_seq_length=st.integers(26, 40))
def test_oracle_round_trip_on_random_contexts(tmp_path, tokenizer, words, data, stride, max_seq_length):
    first = data.draw(st.integers(0, len(words) - 1))
    last = data.draw(st.integers(first, min(first + 2, len(words) - 1)))  # at most 18 pieces: fits a window
    context = " ".join(words)
    answer = " ".join(words[first : last + 1])
    answer_start = len(" ".join(words[:first])) + (1 if first else 0)
    path = squad_file(tmp_path, [{"id": "q", "question": "Which river grows?",
                                  "answers": [{"text": answer, "answer_start": answer_start}]}], context=context)
    examples = read_squad_examples(path, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=max_seq_length, doc_stride=stride,
                                            max_query_length=6, is_training=True)
    # Google's limitation (see the next test): the answer must start where a window holding all of
    # it also gives its first piece the most context.
    assume(any(f.start_positions and f.token_is_max_context[f.start_positions] for f in features))
    assert write_predictions(examples, features, oracle_results(features)) == {"q": answer}


def test_answer_whose_start_has_more_context_in_a_window_without_its_end_is_lost(tmp_path, tokenizer):
    # Windows of 7 pieces, 1 apart, over "the x7 photo ##syn ##thesis". Only the last window (pieces
    # 3-9) holds the answer (pieces 5-9), but piece 5 has more context in the one before (2-8), so
    # not even a perfect model gets the answer back, in Google's decoding as in ours.
    context = "the the the the the the the photosynthesis"
    path = squad_file(tmp_path, [{"id": "q", "question": "Which river grows?",
                                  "answers": [{"text": "the the photosynthesis", "answer_start": 20}]}], context=context)
    examples = read_squad_examples(path, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=14, doc_stride=1, max_query_length=6,
                                            is_training=True)
    holding = [f for f in features if f.start_positions]
    assert [f.doc_span_index for f in holding] == [3] and not holding[0].token_is_max_context[holding[0].start_positions]
    assert write_predictions(examples, features, oracle_results(features)) == {"q": "the photosynthesis"}


@pytest.mark.parametrize("pred_text, orig_text, do_lower_case, expected", [
    ("steve smith", "Steve Smith's", True, "Steve Smith"),  # Google's example: drop the "'s"
    ("1903", "(1903-1911).", True, "1903"),
    ("cafe", "café.", True, "café"),  # accents stripped by the tokenizer come back
    ("Paris", "Paris.", False, "Paris"),
    ("paris", "Paris.", False, "Paris."),  # cased model: the texts differ, keep the whole words
    ("london", "Paris.", True, "Paris."),  # not found: the whole words
    ("", "Paris.", True, "Paris."),
])
def test_get_final_text(pred_text, orig_text, do_lower_case, expected):
    assert get_final_text(pred_text, orig_text, do_lower_case) == expected


# ---------------------------------------------------------------------------------------------
# The metric.


def test_normalize_answer():
    assert normalize_answer("The  Eiffel-Tower, in  PARIS!") == "eiffeltower in paris"
    assert normalize_answer("a cat and an apple; the end") == "cat and apple end"
    assert normalize_answer("theater anthem") == "theater anthem"  # only whole-word articles go
    assert normalize_answer(" \t ") == ""


def test_exact_match_and_f1_by_hand():
    assert exact_match_score("the Eiffel Tower.", "Eiffel tower") == 1.0
    assert exact_match_score("Eiffel", "Eiffel Tower") == 0.0
    # prediction 3 tokens, gold 2, overlap 1: P = 1/3, R = 1/2, F1 = 2PR / (P + R) = 0.4
    assert f1_score("in Paris France", "Paris, Texas") == pytest.approx(0.4)
    assert f1_score("a a b", "a b b") == pytest.approx(2 / 3)  # bag of words: counts matter
    assert f1_score("", "Paris") == 0.0 and f1_score("the", "a") == 0.0


def test_squad_evaluate_takes_the_best_gold_and_averages_in_percent():
    dataset = {"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "1", "answers": [{"text": "Denver Broncos"}, {"text": "the Broncos"}]},
        {"id": "2", "answers": [{"text": "Santa Clara, California"}]},
        {"id": "3", "answers": [{"text": "Levi's Stadium"}]},
        {"id": "4", "answers": [{"text": "2016"}]},
    ]}]}]}
    predictions = {"1": "Broncos", "2": "Santa Clara", "3": "", "other": "ignored"}  # "4": unanswered
    # 1: EM 1 (matches "the Broncos"), F1 1. 2: EM 0, F1 2*(1)*(2/3)/(1+2/3) = 0.8. 3, 4: 0.
    expected = {"exact_match": 25.0, "f1": pytest.approx(100 * 1.8 / 4)}
    assert squad_evaluate(dataset, predictions) == expected
    assert squad_evaluate(dataset["data"], predictions) == expected
    examples = [SquadExample(qa["id"], "?", [], answers=[a["text"] for a in qa["answers"]])
                for qa in dataset["data"][0]["paragraphs"][0]["qas"]]
    assert squad_evaluate(examples, predictions) == expected


def test_squad_evaluate_unanswerable_gold_wants_an_empty_prediction():
    examples = [SquadExample("a", "?", []), SquadExample("b", "?", [])]
    assert squad_evaluate(examples, {"a": "", "b": "the"}) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_evaluate(examples, {"a": "x", "b": ""}) == {"exact_match": 50.0, "f1": 50.0}
    with pytest.raises(ValueError, match="no questions"):
        squad_evaluate([], {})


# ---------------------------------------------------------------------------------------------
# Splitting a file by articles.


def test_split_articles_and_write_the_eval_file(tmp_path):
    split = split_articles(TINY_V1, 1)
    assert [e.qas_id for e in split.train_examples] == [f"sci-{i}" for i in range(1, 7)]
    assert all(e.start_position is not None for e in split.train_examples)
    assert [e.qas_id for e in split.eval_examples] == ["riv-1", "riv-2", "riv-3"]
    assert split.eval_examples[0].start_position is None and split.eval_examples[0].answers == ["Nile", "The Nile"]
    assert split.eval_dataset["version"] == "1.1" and [a["title"] for a in split.eval_dataset["data"]] == ["Rivers"]
    write_squad_dataset(split.eval_dataset, tmp_path / "eval.json")
    assert load_squad_dataset(tmp_path / "eval.json") == split.eval_dataset
    reread = read_squad_examples(tmp_path / "eval.json", is_training=False)
    assert [(e.qas_id, e.answers) for e in reread] == [(e.qas_id, e.answers) for e in split.eval_examples]
    for n_train in (0, 2):
        with pytest.raises(DataError, match="has 2 articles, so n_train must be between 1 and 1"):
            split_articles(TINY_V1, n_train)


# ---------------------------------------------------------------------------------------------
# The real SQuAD v1.1 dev file.


@pytest.fixture(scope="module")
def dev_file(shared_data):
    path = shared_data / "squad" / "dev-v1.1.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def uncased_tokenizer(shared_data):
    return FullTokenizer(shared_data / "vocab" / "bert-base-uncased" / "vocab.txt", do_lower_case=True)


def test_real_dev_file_reads_completely(dev_file):
    assert len(load_squad_dataset(dev_file)["data"]) == 48
    examples = read_squad_examples(dev_file, is_training=False)
    assert len(examples) == 10570 and len({e.qas_id for e in examples}) == 10570
    assert all(len(e.answers) >= 1 for e in examples)
    split = split_articles(dev_file, 38)
    assert len(split.eval_dataset["data"]) == 10 and len(split.eval_examples) == 1988
    assert len(split.train_examples) == 8582  # every dev answer is found in its context
    assert [e.qas_id for e in split.eval_examples] == [e.qas_id for e in examples[-1988:]]


def test_real_dev_oracle_round_trip(dev_file, uncased_tokenizer):
    # Every 30th question (353, from all 48 articles): the first 300 are all Super Bowl 50, whose
    # many sub-word answers ("8" in "20–18") no WordPiece span can give back (oracle EM 96.7 there,
    # in Google's pipeline too; 99.7 over the whole file).
    examples = read_squad_examples(dev_file, is_training=True)[::30]
    features = convert_examples_to_features(examples, uncased_tokenizer, is_training=True, progress=False)
    predictions = write_predictions(examples, features, oracle_results(features))
    scores = squad_evaluate(examples, predictions)
    assert scores["exact_match"] >= 99.0 and scores["f1"] >= 99.0, scores


def test_real_dev_features_match_google(dev_file, uncased_tokenizer):
    examples = read_squad_examples(dev_file, is_training=True)[:600]
    for windows in (GOOGLE_WINDOWS, {"max_seq_length": 128, "doc_stride": 32, "max_query_length": 16}):
        ours = convert_examples_to_features(examples, uncased_tokenizer, **windows, is_training=True,
                                            pad_to_max_length=True, progress=False)
        google = google_convert_examples_to_features(examples, uncased_tokenizer, **windows, is_training=True)
        assert len(ours) == len(google)
        mismatches = [examples[f.example_index].qas_id for f, g in zip(ours, google) if as_google_tuple(f) != g]
        assert mismatches == []
