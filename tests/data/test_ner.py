"""CoNLL and JSONL reading, tag schemes (IOB1, IOB2, BIOES), word-piece label alignment and
long-sentence windows (data/ner.py)."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from bertkit.data.ner import (IGNORE_INDEX, NerExample, align_predictions, bioes_to_iob2, check_labels,
                              convert_examples_to_features, count_entities, detect_scheme, entity_spans, get_labels,
                              iob1_to_iob2, iob2_to_bioes, make_windows, read_conll, read_ner_file, to_scheme,
                              window_owners)
from bertkit.errors import ConfigError, DataError
from bertkit.tokenization import FullTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ner"


@pytest.mark.parametrize("iob1, iob2", [
    ([], []),
    (["O", "O"], ["O", "O"]),
    (["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"]),  # an entity at the start of the sentence
    (["O", "I-LOC", "O", "I-LOC"], ["O", "B-LOC", "O", "B-LOC"]),
    (["I-LOC", "B-LOC", "I-LOC"], ["B-LOC", "B-LOC", "I-LOC"]),  # B- between two adjacent LOCs stays
    (["I-ORG", "I-PER", "I-PER"], ["B-ORG", "B-PER", "I-PER"]),  # a change of type starts an entity
    (["B-MISC", "I-MISC", "O"], ["B-MISC", "I-MISC", "O"]),  # IOB2 input is left as it is
])
def test_iob1_to_iob2(iob1, iob2):
    assert iob1_to_iob2(iob1) == iob2
    assert iob1_to_iob2(iob2) == iob2  # idempotent


def test_reads_the_fixture_with_docstarts_line_numbers_and_iob2_tags():
    examples = read_conll(FIXTURES / "eng.train")
    assert len(examples) == 6
    assert examples[0].guid == "eng.train-0" and examples[0].line == 3
    assert examples[0].words[:3] == ["EU", "rejects", "German"]
    assert examples[0].labels[:3] == ["B-ORG", "O", "B-MISC"]
    assert examples[1].words == ["Peter", "Blackburn"] and examples[1].labels == ["B-PER", "I-PER"]
    assert examples[5].labels[:3] == ["B-LOC", "B-LOC", "B-LOC"]
    assert get_labels(examples) == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER"]
    assert count_entities(examples) == {"LOC": 6, "MISC": 3, "ORG": 3, "PER": 2}
    unlabelled = read_conll(FIXTURES / "eng.train", label_column=None)
    assert [e.words for e in unlabelled] == [e.words for e in examples] and unlabelled[0].labels is None


def test_two_column_files_and_label_column(tmp_path):
    examples = read_conll(FIXTURES / "two_column.txt")
    assert [e.words for e in examples] == [["John", "lives", "in", "Berlin"], ["The", "European", "Commission", "met"]]
    assert examples[1].labels == ["O", "B-ORG", "I-ORG", "O"]
    middle = tmp_path / "middle.txt"
    middle.write_text("Paris I-LOC NNP\nis O VBZ\n")
    assert read_conll(middle, label_column=1)[0].labels == ["B-LOC", "O"]


@pytest.mark.parametrize("name, text, line, message", [
    ("missing_column.txt", None, 3, "expected 4 columns as on line 1, got 3"),
    ("bad_tag.txt", None, 3, "tag 'X-ORG' is not O, B-TYPE, I-TYPE, E-TYPE or S-TYPE"),
    ("one_column.txt", "\n\nEU\nrejects\n", 3, "expected a token and a label column"),
    ("too_many.txt", "EU I-ORG\nrejects O extra\n", 2, "expected 2 columns as on line 1, got 3"),
    ("latin1.txt", b"EU I-ORG\n\nM\xfcnchen I-LOC\n", 3, "not valid UTF-8"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, name, text, line, message):
    path = FIXTURES / name
    if text is not None:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DataError) as err:
        read_conll(path)
    assert f"{path}:{line}: " in str(err.value) and message in str(err.value)


def test_missing_file_and_unknown_labels_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_conll(tmp_path / "eng.train")
    examples = read_conll(FIXTURES / "eng.testb")
    with pytest.raises(DataError, match=r"eng\.testb:3: label 'B-PER' is not one of the model's 3 labels"):
        check_labels(examples, ["O", "B-LOC", "I-LOC"], FIXTURES / "eng.testb")


@pytest.fixture
def piece_tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "john", "##son", "lives", "in", "new",
                                "york", "un", "##aff", "##able", ".", "a"]) + "\n")
    return FullTokenizer(vocab, do_lower_case=True)


def test_first_piece_carries_the_label_and_the_rest_are_ignored(piece_tokenizer):
    labels = ["O", "B-LOC", "B-PER", "I-LOC", "I-PER"]
    example = NerExample("s-0", ["Johnson", "lives", "in", "New", "York", "unaffable", "."],
                         ["B-PER", "O", "O", "B-LOC", "I-LOC", "O", "O"])
    [feature] = convert_examples_to_features([example], labels, 32, piece_tokenizer)
    tokens = piece_tokenizer.convert_ids_to_tokens(feature.input_ids)
    assert tokens == ["[CLS]", "john", "##son", "lives", "in", "new", "york", "un", "##aff", "##able", ".", "[SEP]"]
    i = IGNORE_INDEX
    assert feature.labels == [i, 2, i, 0, 0, 1, 3, 0, i, i, 0, i]
    assert feature.word_ids == [-1, 0, 0, 1, 2, 3, 4, 5, 5, 5, 6, -1]
    assert feature.predict_words == [-1, 0, -1, 1, 2, 3, 4, 5, -1, -1, 6, -1]
    assert feature.attention_mask == [1] * 12 and feature.token_type_ids == [0] * 12
    assert len(feature.labels) == len(feature.input_ids)


def test_words_the_tokenizer_drops_become_unk(piece_tokenizer):
    [feature] = convert_examples_to_features([NerExample("s", ["a", "\x00", "a"], ["O", "O", "O"])], ["O"], 8,
                                             piece_tokenizer)
    assert piece_tokenizer.convert_ids_to_tokens(feature.input_ids) == ["[CLS]", "a", "[UNK]", "a", "[SEP]"]
    assert feature.labels == [IGNORE_INDEX, 0, 0, 0, IGNORE_INDEX]


@pytest.mark.parametrize("seed", range(40))
def test_windows_cover_every_word_and_each_is_predicted_once_with_most_context(seed):
    rng = random.Random(seed)
    capacity = rng.randint(1, 12)
    counts = [rng.randint(1, min(4, capacity)) for _ in range(rng.randint(0, 40))]
    stride = rng.randint(1, capacity + 3)
    windows = make_windows(counts, capacity, stride)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    assert windows[0][0] == 0 and windows[-1][1] == len(counts)
    for (start, end), (next_start, _) in zip(windows, windows[1:]):
        assert start < next_start <= end  # moves on, leaves no gap
    for start, end in windows:
        assert offsets[end] - offsets[start] <= capacity
    owners = window_owners(counts, windows)
    for word, owner in enumerate(owners):
        start, end = windows[owner]
        assert start <= word < end

        def context(w, word=word):
            s, e = windows[w]
            return min(offsets[word] - offsets[s], offsets[e] - offsets[word + 1])

        containing = [w for w, (s, e) in enumerate(windows) if s <= word < e]
        assert context(owner) == max(context(w) for w in containing)


def test_long_sentences_are_windowed_not_truncated_and_predictions_map_back(piece_tokenizer):
    labels = ["O", "B-PER", "I-PER"]
    words = ["Johnson", "lives", "in", "unaffable", "New", "York", "."] * 6  # 72 pieces
    tags = (["B-PER", "O", "O", "O", "O", "O", "O"]) * 6
    examples = [NerExample("short", ["john"], ["B-PER"]), NerExample("long", words, tags)]
    features = convert_examples_to_features(examples, labels, 16, piece_tokenizer, doc_stride=5)
    assert len(features) > 5 and all(len(f.input_ids) <= 16 for f in features)
    assert [f.example_index for f in features][:2] == [0, 1]
    predicted = {}
    for f in features:
        for position, word in enumerate(f.predict_words):
            if word >= 0:
                assert (f.example_index, word) not in predicted
                predicted[(f.example_index, word)] = f.labels[position]
                assert f.word_ids[position] == word
                assert f.word_ids[position - 1] != word  # the word's first piece
    assert sorted(predicted) == [(0, 0)] + [(1, w) for w in range(len(words))]
    assert all(predicted[(1, w)] == labels.index(t) for w, t in enumerate(tags))
    # Predictions of the word index (plus 1) at every token come back as one per word, in order,
    # whatever the padding of the prediction array.
    rows = np.full((len(features), 20), -100)
    for r, f in enumerate(features):
        rows[r, :len(f.word_ids)] = np.array(f.word_ids) + 1
    aligned = align_predictions(features, rows, examples)
    assert aligned == [[1], list(range(1, len(words) + 1))]


def test_align_predictions_refuses_features_of_other_examples(piece_tokenizer):
    examples = [NerExample("a", ["a", "a"], ["O", "O"])]
    features = convert_examples_to_features(examples, ["O"], 8, piece_tokenizer)
    with pytest.raises(ValueError, match="no prediction"):
        align_predictions(features, np.zeros((1, 4), dtype=int), [NerExample("b", ["a", "a", "a"])])


def test_real_conll2003_has_the_published_counts(shared_data):
    expected = {
        "eng.train": (14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
        "eng.testa": (3250, 51362, {"LOC": 1837, "MISC": 922, "ORG": 1341, "PER": 1842}),
        "eng.testb": (3453, 46435, {"LOC": 1668, "MISC": 702, "ORG": 1661, "PER": 1617}),
    }
    for name, (sentences, tokens, entities) in expected.items():
        examples = read_conll(shared_data / "conll2003" / name)
        assert len(examples) == sentences, name
        assert sum(len(e.words) for e in examples) == tokens, name
        assert count_entities(examples) == entities, name
        assert get_labels(examples) == ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER"]


# -- tag schemes ------------------------------------------------------------------------------

IOB2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "B-ORG"]
BIOES = ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"]
IOB1 = ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-LOC", "O", "I-ORG"]


def test_schemes_are_detected_and_convert_both_ways():
    assert detect_scheme([IOB1]) == "IOB1" and detect_scheme([IOB2]) == "IOB2" and detect_scheme([BIOES]) == "BIOES"
    assert detect_scheme([["O", "O"], []]) == "IOB2"  # no entities: nothing says otherwise
    assert iob2_to_bioes(IOB2) == BIOES and bioes_to_iob2(BIOES) == IOB2
    for tags in (IOB1, IOB2, BIOES):
        assert to_scheme(tags, "IOB2") == IOB2 and to_scheme(tags, "BIOES") == BIOES
    # Every scheme gives the same entities (type, first word, end word).
    spans = [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 7), ("ORG", 8, 9)]
    assert entity_spans(IOB2) == entity_spans(BIOES) == entity_spans(IOB1) == spans
    # Predictions are decoded as seqeval reads them: an I- after O starts an entity, E- and S- end one.
    assert entity_spans(["O", "I-PER", "I-PER", "E-PER", "I-PER", "S-LOC", "I-LOC"]) == [
        ("PER", 1, 4), ("PER", 4, 5), ("LOC", 5, 6), ("LOC", 6, 7)]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_file_reports_its_scheme_and_converts_to_the_models(tmp_path):
    bioes = write(tmp_path / "bioes.txt", "Angela B-PER\nMerkel E-PER\nin O\nParis S-LOC\n")
    examples, scheme = read_ner_file(bioes)
    assert scheme == "BIOES" and examples[0].labels == ["B-PER", "E-PER", "O", "S-LOC"]  # a BIOES model keeps them
    examples, _ = read_ner_file(bioes, scheme="IOB2")  # a dev file in BIOES for an IOB2 model
    assert examples[0].labels == ["B-PER", "I-PER", "O", "B-LOC"]
    examples, scheme = read_ner_file(FIXTURES / "eng.train")
    assert scheme == "IOB1" and examples[0].labels[:3] == ["B-ORG", "O", "B-MISC"]
    assert read_ner_file(FIXTURES / "eng.train", scheme="BIOES")[0][1].labels == ["B-PER", "E-PER"]


@pytest.mark.parametrize("text, line, found", [
    ("A B-PER\nB O\nC S-LOC\n", 2, "'O'"),  # B- not closed by E-
    ("A S-PER\nB I-PER\n", 2, "'I-PER'"),  # I- that continues nothing
    ("A B-PER\nB E-LOC\n", 2, "'E-LOC'"),  # E- of another type
    ("A O\nB S-LOC\n\nC B-ORG\n", 4, "'B-ORG'"),  # B- open at the end of a sentence
])
def test_broken_bioes_order_names_the_line(tmp_path, text, line, found):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataError, match=rf"bad\.txt:{line}: tag {found} breaks the BIOES order"):
        read_ner_file(path)


# -- JSONL -------------------------------------------------------------------------------------

CONLL2003_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def jsonl(path: Path, *records) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                               for r in records))


def test_jsonl_as_transformers_datasets_hold_it(tmp_path):
    # datasets' conll2003 rows: integer ner_tags named by the ClassLabel, extra keys beside them.
    path = jsonl(tmp_path / "train.jsonl",
                 {"id": "0", "tokens": ["EU", "rejects", "German", "call"], "pos_tags": [22, 42, 16, 21],
                  "ner_tags": [3, 0, 7, 0]},
                 "",  # a blank line is skipped
                 {"id": "1", "tokens": ["Peter", "Blackburn"], "ner_tags": [1, 2]},
                 {"id": "2", "tokens": [], "ner_tags": []})  # an empty record: nothing to tag, skipped
    examples, scheme = read_ner_file(path, label_list=CONLL2003_NAMES)
    assert scheme == "IOB2" and [e.words for e in examples] == [["EU", "rejects", "German", "call"],
                                                                ["Peter", "Blackburn"]]
    assert examples[0].labels == ["B-ORG", "O", "B-MISC", "O"] and examples[1].labels == ["B-PER", "I-PER"]
    assert examples[1].line == 3 and examples[1].word_line(1) == 3  # a record's words are all on its line
    # String tags and other key names; unlabelled reading needs the words only.
    named = jsonl(tmp_path / "named.json", {"words": ["北", "京"], "tags": ["B-LOC", "I-LOC"]})
    assert read_ner_file(named, text_column="words", label_column="tags")[0][0].labels == ["B-LOC", "I-LOC"]
    unlabelled = jsonl(tmp_path / "test.jsonl", {"tokens": ["Paris"]})
    assert read_ner_file(unlabelled, labelled=False) == ([NerExample("test.jsonl-0", ["Paris"], None, 1, True)], None)
    with pytest.raises(DataError, match=r"eng\.jsonl:1: label 'B-PER' is not one of the model's 3 labels"):
        check_labels(read_ner_file(jsonl(tmp_path / "eng.jsonl", {"tokens": ["Jo"], "ner_tags": ["B-PER"]}))[0],
                     ["O", "B-LOC", "I-LOC"], tmp_path / "eng.jsonl")


@pytest.mark.parametrize("record, options, message", [
    ('{"tokens": ["a"], "ner_tags": ["O"]', {}, "not a JSON object"),
    ({"text": "a b", "ner_tags": ["O"]}, {}, "missing key 'tokens'"),
    ({"tokens": ["a", "b"], "ner_tags": ["O"]}, {}, "2 tokens but 1 ner_tags"),
    ({"tokens": ["a", " "], "ner_tags": ["O", "O"]}, {}, r"tokens\[1\] is ' '"),
    ({"tokens": ["a"], "ner_tags": [1]}, {}, "give their names in order with --label_list"),
    ({"tokens": ["a"], "ner_tags": [9]}, {"label_list": CONLL2003_NAMES}, r"ner_tags\[0\] = 9 is not a class id"),
    ({"tokens": ["a"], "ner_tags": [None]}, {}, r"ner_tags\[0\] is a JSON null"),
    ({"tokens": ["a"], "ner_tags": ["PER"]}, {}, r"tag 'PER' is not O, B-TYPE"),
])
def test_bad_jsonl_records_name_the_file_and_line(tmp_path, record, options, message):
    path = jsonl(tmp_path / "train.jsonl", {"tokens": ["ok"], "ner_tags": ["O"]}, record)
    with pytest.raises(DataError, match=rf"train\.jsonl:2: .*{message}"):
        read_ner_file(path, **options)


def test_format_flags_that_do_not_fit_the_file_are_config_errors(tmp_path):
    columns = write(tmp_path / "train.txt", "Paris B-LOC\n")
    with pytest.raises(ConfigError, match="--label_column=ner_tags names a JSONL key"):
        read_ner_file(columns, label_column="ner_tags")
    with pytest.raises(ConfigError, match="--text_column=words is for JSONL files"):
        read_ner_file(columns, text_column="words")
    with pytest.raises(ConfigError, match="--label_column=1 is a column number"):
        read_ner_file(jsonl(tmp_path / "t.jsonl", {"tokens": ["a"], "ner_tags": ["O"]}), label_column=1)
    # --file_format overrides the extension.
    assert read_ner_file(write(tmp_path / "records.txt", '{"tokens": ["a"], "ner_tags": ["O"]}\n'),
                         file_format="jsonl")[0][0].words == ["a"]


# -- one character per line (Chinese NER) -------------------------------------------------------

def test_one_character_per_line(tmp_path):
    path = write(tmp_path / "zh.txt", "我 O\n在 O\n北 B-LOC\n京 I-LOC\n\n新 B-ORG\n华 I-ORG\n社 I-ORG\n")
    examples, scheme = read_ner_file(path)
    assert scheme == "IOB2" and examples[0].words == ["我", "在", "北", "京"] and examples[1].line == 6
    vocab = write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "我", "在", "北", "京"]))
    features = convert_examples_to_features(examples, get_labels(examples), 16, FullTokenizer(vocab))
    # One token per character; a character missing from the vocabulary is [UNK] and keeps its label.
    assert features[0].input_ids == [2, 4, 5, 6, 7, 3] and features[1].input_ids == [2, 1, 1, 1, 3]
    assert features[1].labels[1:4] == [2, 4, 4]  # O, B-LOC, B-ORG, I-LOC, I-ORG


def test_real_chinese_ner_files(shared_data):
    for name, sentences in (("dev.txt", 2318), ("test.txt", 4636)):
        examples, scheme = read_ner_file(shared_data / "chinese" / "ner" / name)
        assert len(examples) == sentences and scheme == "IOB2"
        assert all(len(word) == 1 for example in examples for word in example.words)
    assert set(get_labels(examples)) == {"O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
