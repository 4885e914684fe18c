"""Multiple-choice readers (SWAG CSV, CommonsenseQA JSONL) and (choices, seq) features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertkit.data.batching import FeatureDataset, PaddingCollator
from bertkit.data.multiple_choice import (
    MultipleChoiceExample,
    convert_example,
    convert_examples_to_features,
    get_processor,
    read_commonsenseqa_examples,
    read_swag_examples,
)
from bertkit.errors import DataError
from bertkit.tokenization import FullTokenizer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "multiple_choice"
SWAG_HEADER = ",video-id,fold-ind,startphrase,sent1,sent2,gold-source,ending0,ending1,ending2,ending3,label\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tokenizer(tmp_path):
    words = "the cat sat on a mat dog ran far away big red".split()
    vocab = write(tmp_path / "vocab.txt", "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words]) + "\n")
    return FullTokenizer(str(vocab), do_lower_case=True)


# ------------------------------------------------------------------------------ SWAG


def test_swag_hf_dummy_sample(shared_data):
    folder = shared_data / "swag" / "hf_dummy_sample"
    train = read_swag_examples(folder / "train.csv")
    assert [e.label for e in train] == [0, 3, 1, 3]
    first = train[0]
    assert first.contexts == ["Members of the procession walk down the street holding small horn brass instruments."] * 4
    assert first.question == "A drum line"
    assert first.endings[0] == "passes by walking down the street playing their instruments."
    assert first.pairs()[0][1] == "A drum line passes by walking down the street playing their instruments."
    assert train[3].endings[3] == "play and go back and forth hitting the drums while the audience claps for them."
    assert [e.label for e in read_swag_examples(folder / "val.csv")] == [2, 2, 2, 2]
    test = read_swag_examples(folder / "test.csv")
    assert len(test) == 4 and all(e.label is None for e in test)
    with pytest.raises(DataError, match=r"train_full.csv:1: .*ending0.*use train.csv, val.csv or test.csv"):
        read_swag_examples(folder / "train_full.csv")


def test_swag_fixture_quoted_commas_ids_and_startphrase_only():
    train = read_swag_examples(FIXTURES / "swag" / "train.csv")
    assert len(train) == 6 and [e.label for e in train] == [0, 1, 2, 3, 0, 1]
    assert train[0].endings[3] == "folds the bowl, then eats it."
    assert [e.example_id for e in train] == ["0", "1", "2", "3", "4", "5"]
    assert train[0].choice_labels == ["0", "1", "2", "3"]
    only = read_swag_examples(FIXTURES / "swag" / "startphrase_only.csv")
    assert only[0].contexts[0] == "The kettle starts to whistle. Someone" and only[0].question == ""
    assert only[0].pairs()[0] == ("The kettle starts to whistle. Someone", "turns off the stove.")
    assert only[0].example_id == "0"


@pytest.mark.parametrize("body, message", [
    ("0,v,1,s,a,b,g,e0,e1,e2,e3,7\n", r"x.csv:2: record 1 has label '7'; expected 0-3"),
    ("0,v,1,s,a,b,g,e0,e1,e2,e3,0\n1,v,1,s,a,b,g,e0,e1,e2\n", r"x.csv:3: record 2 has 10 columns, the header has 12"),
    ('0,v,1,s,a,b,g,e0,e1,e2,e3,0\n1,v,1,"s,a,b,g,e0,e1,e2,e3,0\n', r"x.csv:3: record 2 has 4 columns.*quoting"),
])
def test_swag_malformed_records_name_file_and_line(tmp_path, body, message):
    path = write(tmp_path / "x.csv", SWAG_HEADER + body)
    with pytest.raises(DataError, match=message):
        read_swag_examples(path)


def test_swag_header_and_missing_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"y.csv:1: the header has no column\(s\) ending3"):
        read_swag_examples(write(tmp_path / "y.csv", "sent1,sent2,ending0,ending1,ending2,label\n"))
    with pytest.raises(DataError, match=r"z.csv:1: the header has neither sent1 \+ sent2 nor startphrase"):
        read_swag_examples(write(tmp_path / "z.csv", "sent1,ending0,ending1,ending2,ending3\n"))
    with pytest.raises(DataError, match=r"empty.csv: the file is empty"):
        read_swag_examples(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match=r"nope.csv: file not found"):
        read_swag_examples(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------ CommonsenseQA


def test_commonsenseqa_real_files(shared_data):
    folder = shared_data / "multiple_choice" / "commonsenseqa"
    train = read_commonsenseqa_examples(folder / "train_rand_split.jsonl")
    dev = read_commonsenseqa_examples(folder / "dev_rand_split.jsonl")
    assert (len(train), len(dev)) == (9741, 1221)
    assert all(e.label is not None and e.choice_labels == list("ABCDE") for e in train + dev)
    assert train[0].example_id == "075e483d21c29a511267ef62bedc0461" and train[0].label == 0
    assert train[0].endings == ["ignore", "enforce", "authoritarian", "yell at", "avoid"]
    assert train[0].contexts[0].startswith("The sanctions against the school") and train[0].question == ""
    test = read_commonsenseqa_examples(folder / "test_rand_split_no_answers.jsonl")
    assert len(test) == 1140 and all(e.label is None for e in test)


def test_commonsenseqa_fixture_labels_from_answer_keys():
    folder = FIXTURES / "commonsenseqa"
    train = read_commonsenseqa_examples(folder / "train_rand_split.jsonl")
    assert [e.label for e in train] == [0, 1, 2, 3, 4, 0]
    assert train[1].pairs()[1] == ("What do you use to cut paper?", "scissors")
    assert [e.label for e in read_commonsenseqa_examples(folder / "test_rand_split_no_answers.jsonl")] == [None, None]


def _record(**changes) -> str:
    record = {"answerKey": "B", "id": "q1", "question": {"stem": "Why?", "choices": [
        {"label": "A", "text": "one"}, {"label": "B", "text": "two"}]}}
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize("second_line, message", [
    ('{"id": "q2", "question": ', r"x.jsonl:3: not valid JSON"),
    (_record(answerKey="E"), r"x.jsonl:3 \(id q1\): answerKey 'E' is not one of the choice labels \['A', 'B'\]"),
    (_record(question={"choices": []}), r"x.jsonl:3 \(id q1\), question: missing key 'stem'"),
    (_record(id=7), r"x.jsonl:3: 'id' must be a JSON string, found integer"),
    ('[1, 2]', r"x.jsonl:3: expected a JSON object, found array"),
    (_record(question={"stem": "Why?", "choices": [{"label": "A", "text": "one"}]}),
     r"x.jsonl:3 \(id q1\): 1 choices, but the records before have 2"),
    (_record(question={"stem": "Why?", "choices": [{"label": "A", "text": "x"}, {"label": "A", "text": "y"}]}),
     r"distinct labels"),
    (_record(question={"stem": "Why?", "choices": [{"label": "A"}, {"label": "B", "text": "y"}]}),
     r"x.jsonl:3 \(id q1\), choice 0: missing key 'text'"),
])
def test_commonsenseqa_malformed_records_name_file_and_line(tmp_path, second_line, message):
    path = write(tmp_path / "x.jsonl", _record() + "\n\n" + second_line + "\n")
    with pytest.raises(DataError, match=message):
        read_commonsenseqa_examples(path)


def test_processors_know_their_files_and_reject_unknown_tasks(tmp_path):
    assert get_processor("SWAG").data_file("d", "dev") == Path("d/val.csv")
    assert get_processor("csqa").data_file("d", "test") == Path("d/test_rand_split_no_answers.jsonl")
    with pytest.raises(DataError, match="--task must be one of: swag, commonsenseqa"):
        get_processor("race")
    with pytest.raises(DataError, match=r"train_rand_split.jsonl: file not found; check --data_dir"):
        get_processor("commonsenseqa").get_examples(tmp_path, "train")


# ------------------------------------------------------------------------------ features


def test_features_are_choices_by_seq_with_pair_layout(tokenizer):
    example = MultipleChoiceExample("e1", contexts=["the cat sat"] * 3, endings=["on a mat", "ran", "far away"],
                                    label=2, question="the dog")
    feature = convert_example(example, 16, tokenizer)
    assert len(feature.input_ids) == 3 and feature.labels == 2
    tokens = tokenizer.convert_ids_to_tokens(feature.input_ids[0])
    assert tokens == ["[CLS]", "the", "cat", "sat", "[SEP]", "the", "dog", "on", "a", "mat", "[SEP]"]
    assert feature.token_type_ids[0] == [0] * 5 + [1] * 6 and feature.attention_mask[0] == [1] * 11
    padded = convert_example(example, 16, tokenizer, pad_to_max_length=True)
    assert {len(row) for rows in (padded.input_ids, padded.attention_mask, padded.token_type_ids) for row in rows} == {16}
    assert padded.attention_mask[1] == [1] * 9 + [0] * 7


def test_pair_truncation_is_longest_first_to_max_seq_length(tokenizer):
    example = MultipleChoiceExample("e", contexts=["the big red cat sat on a mat"] * 2,
                                    endings=["dog", "the dog ran far away"], label=0)
    feature = convert_example(example, 9, tokenizer)
    assert [len(row) for row in feature.input_ids] == [9, 9]
    assert tokenizer.convert_ids_to_tokens(feature.input_ids[0]) == [
        "[CLS]", "the", "big", "red", "cat", "sat", "[SEP]", "dog", "[SEP]"]
    assert tokenizer.convert_ids_to_tokens(feature.input_ids[1]) == [
        "[CLS]", "the", "big", "red", "[SEP]", "the", "dog", "ran", "[SEP]"]


def test_dataset_and_collator_give_batch_choices_seq(tokenizer):
    examples = read_commonsenseqa_examples(FIXTURES / "commonsenseqa" / "train_rand_split.jsonl")
    dataset = FeatureDataset(convert_examples_to_features(examples, 32, tokenizer))
    batch = PaddingCollator()([dataset[i] for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert batch["input_ids"].shape[:2] == (3, 5) and batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["labels"].tolist() == [0, 1, 2]
    unlabeled = read_commonsenseqa_examples(FIXTURES / "commonsenseqa" / "test_rand_split_no_answers.jsonl")
    assert "labels" not in FeatureDataset(convert_examples_to_features(unlabeled, 32, tokenizer))[0]


def test_examples_with_different_choice_counts_are_rejected(tokenizer):
    examples = [MultipleChoiceExample("a", ["x"] * 2, ["y", "z"]), MultipleChoiceExample("b", ["x"] * 3, ["y"] * 3)]
    with pytest.raises(DataError, match=r"different numbers of choices \[2, 3\]"):
        convert_examples_to_features(examples, 16, tokenizer)
