"""Your own classification files: formats, columns, labels, and one clear line for each mistake."""

import json
import logging

import pytest

from bertkit.data.glue import convert_examples_to_features
from bertkit.data.tabular import TabularData, TabularProcessor, choose_text_columns, file_format
from bertkit.errors import ConfigError, DataError
from bertkit.tokenization import FullTokenizer
from helpers import REPO, TINY_VOCAB

REVIEWS = REPO / "examples" / "data" / "reviews"
TICKETS = REPO / "examples" / "data" / "support_tickets"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_the_example_csv_reads_with_sorted_string_labels():
    data = TabularData(REVIEWS / "train.csv", REVIEWS / "dev.csv")
    assert data.spec.problem_type == "single_label_classification"
    assert data.spec.names == ["negative", "neutral", "positive"]
    train = data.examples("train")
    assert train[0].guid == "train-2" and train[0].label == "positive" and train[0].text_b is None
    assert train[1].text_a == "The battery lasts two full days, far better than my old one."  # a quoted field
    assert {e.label for e in data.examples("dev")} == set(data.spec.names)


def test_tsv_jsonl_and_format_override(tmp_path):
    write(tmp_path / "a.tsv", "sentence1\tsentence2\tlabel\nA \"quote\tB\t1\nC\tD\t0\n")
    data = TabularData(tmp_path / "a.tsv")
    assert [(e.text_a, e.text_b, e.label) for e in data.examples("train")] == [('A "quote', "B", "1"), ("C", "D", "0")]
    assert data.spec.names == ["0", "1"]
    write(tmp_path / "a.data", '{"sentence": "x", "label": 1}\n\n{"sentence": "y", "label": 0}\n')
    data = TabularData(tmp_path / "a.data", file_format_override="jsonl")
    assert [(e.guid, e.label) for e in data.examples("train")] == [("train-1", "1"), ("train-3", "0")]
    with pytest.raises(ConfigError, match=r"a.data.*--file_format"):
        file_format(tmp_path / "a.data")


def test_integer_labels_sort_by_value_and_floats_mean_regression(tmp_path):
    rows = "".join(f"t{i},{i % 11}\n" for i in range(22))
    assert TabularData(write(tmp_path / "ints.csv", "text,label\n" + rows)).spec.names[-2:] == ["9", "10"]
    data = TabularData(write(tmp_path / "scores.csv", "text,label\na,0.5\nb,3\nc,4.25\n"))
    assert data.spec.problem_type == "regression" and data.spec.num_labels == 1
    assert [e.label for e in data.examples("train")] == [0.5, 3.0, 4.25]
    data = TabularData(write(tmp_path / "int_scores.csv", "text,label\na,1\nb,3\n"), problem_type="regression")
    assert [e.label for e in data.examples("train")] == [1.0, 3.0]


def test_multi_label_from_json_lists_and_separated_strings(tmp_path):
    data = TabularData(TICKETS / "train.jsonl", TICKETS / "dev.jsonl", problem_type="multi_label_classification")
    assert data.spec.names == ["account", "billing", "bug", "feature_request", "refund"]
    assert data.examples("dev")[0].label == ("billing", "refund")
    assert data.examples("train")[-1].label == ()  # no tag at all is a valid example
    csv_file = write(tmp_path / "tags.csv", 'text,tags\na,"x|y"\nb,y\nc,\nd,"[""x""]"\n')
    data = TabularData(csv_file, label_column="tags", problem_type="multi_label_classification", label_separator="|")
    assert [e.label for e in data.examples("train")] == [("x", "y"), ("y",), (), ("x",)]
    features = convert_examples_to_features(data.examples("train"), data.spec.names, 16,
                                            FullTokenizer(TINY_VOCAB), pad_to_max_length=False)
    assert [f.labels for f in features] == [[1.0, 1.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]


def test_validation_split_is_seeded_and_disjoint():
    def split(seed):
        data = TabularData(REVIEWS / "train.csv", validation_split_percentage=25, seed=seed)
        return [e.guid for e in data.examples("dev")], [e.guid for e in data.examples("train")]

    dev, train = split(1)
    assert len(dev) == 8 and len(train) == 26 and not set(dev) & set(train)
    assert split(1) == (dev, train) and split(2)[0] != dev
    assert train == sorted(train, key=lambda g: int(g.split("-")[1]))  # the file's order within a split


def test_default_text_columns_follow_run_glue(tmp_path):
    assert choose_text_columns(["sentence1", "sentence2", "label"], None, None, "f") == ("sentence1", "sentence2")
    assert choose_text_columns(["id", "sentence", "text", "label"], None, None, "f") == ("text", None)
    assert choose_text_columns(["review", "label"], "review", None, "f") == ("review", None)


def test_chnsenticorp_label_with_spaces_is_stripped_and_counted(shared_data, caplog):
    """The real test.tsv has a row labelled '    0' (line 419): read as 0, with one log line naming it."""
    folder = shared_data / "chinese" / "chnsenticorp"
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        data = TabularData(folder / "train.tsv", test_file=folder / "test.tsv", text_column="text_a")
        test = data.examples("test")
    assert data.spec.names == ["0", "1"]
    assert len(test) == len((folder / "test.tsv").read_text(encoding="utf-8").splitlines()) - 1  # none dropped
    assert next(e for e in test if e.guid == "test-419").label == "0"
    assert "test.tsv: 1 label(s) had spaces around them" in caplog.text and "line 419" in caplog.text


@pytest.mark.parametrize("files, kwargs, message", [
    ({"t.csv": "review,label\na,x\n"}, {}, r"t.csv: no text column.*columns found are: review, label.*--text_column"),
    ({"t.csv": "text,stars\na,x\n"}, {}, r"t.csv: no label column 'label'.*columns found are: text, stars"),
    ({"t.csv": "text,label\na,x\n"}, {"text_column": "body"}, r"no column 'body' \(--text_column\)"),
    ({"t.csv": "text,label\na,x\n  ,y\n"}, {}, r"t.csv:3: empty text in column 'text'"),
    ({"t.csv": "text,label\na,x\nb,y\nc,\n"}, {}, r"t.csv:4: empty label in column 'label'"),
    ({"t.csv": "text,label\na,x\nb,x\n"}, {}, r"t.csv: every example has the label 'x'.*at least two classes"),
    ({"t.csv": "text,label\na,1\nb,spam\n"}, {}, r"t.csv: mixed label kinds: line 2 has integer '1', line 3 has "
                                                 r"string 'spam'"),
    ({"t.csv": "text,label\na,x\nb,y\n", "d.csv": "text,label\nc,x\nd,z\n"}, {}, r"d.csv:3: label 'z' never "
                                                                                 r"appears in the training file"),
    ({"t.csv": "text,label\na,x,extra\n"}, {}, r"t.csv:2: 3 columns, but the header has 2"),
    ({"t.jsonl": '{"text": "a", "label": "x"}\n{"text": "b", \n'}, {}, r"t.jsonl:2: not a JSON object"),
    ({"t.jsonl": '{"text": "a", "label": ["x"]}\n'}, {}, r"t.jsonl:1: the label is a list.*multi_label"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, files, kwargs, message):
    paths = [write(tmp_path / name, text) for name, text in files.items()]
    with pytest.raises((DataError, ConfigError), match=message) as info:
        data = TabularData(paths[0], *paths[1:], **kwargs)
        data.examples("train")
        data.examples("dev") if len(paths) > 1 else None
    assert "\n" not in str(info.value)


def test_unlabelled_test_file_and_labels_given_by_the_model(tmp_path):
    test = write(tmp_path / "test.csv", "text\nhello\n")
    data = TabularData(test_file=test, labels=["neg", "pos"])
    processor = TabularProcessor(data)
    assert processor.get_labels() == ["neg", "pos"] and not processor.has_labels("test")
    assert data.examples("test")[0].label == "neg"  # Google's placeholder, dropped before any metric
    with pytest.raises(ConfigError, match="no --train_file to read the labels from"):
        TabularData(test_file=test)
