"""GLUE processors and feature conversion, checked against Google's run_classifier.py semantics."""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path

import pytest

from bertkit.data.glue import (
    PROCESSORS,
    ColaProcessor,
    ClassifierFeatures,
    InputExample,
    MnliProcessor,
    MrpcProcessor,
    PaddingInputExample,
    convert_examples_to_features,
    convert_single_example,
    get_processor,
)
from bertkit.errors import DataError
from bertkit.tokenization import FullTokenizer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "glue"
SAMPLE_DIR = REPO / "examples" / "data" / "mrpc_sample"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ task registry


@pytest.mark.parametrize(
    "name, expected",
    [("MRPC", "MrpcProcessor"), ("sst-2", "Sst2Processor"), ("SST2", "Sst2Processor"), ("sts-b", "StsbProcessor"),
     ("STSB", "StsbProcessor"), ("MNLI-MM", "MnliMismatchedProcessor"), ("qnli", "QnliProcessor"),
     ("WNLI", "WnliProcessor"), ("QQP", "QqpProcessor"), ("rte", "RteProcessor"), ("CoLA", "ColaProcessor")],
)
def test_get_processor_is_case_insensitive_and_knows_aliases(name, expected):
    assert type(get_processor(name)).__name__ == expected


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(DataError, match="--task_name must be one of: .*mrpc.*sts-b"):
        get_processor("squad")


def test_label_sets_and_regression_flags():
    assert get_processor("mnli").get_labels() == ["contradiction", "entailment", "neutral"]
    assert get_processor("rte").get_labels() == get_processor("qnli").get_labels() == ["entailment", "not_entailment"]
    assert get_processor("wnli").get_labels() == ["0", "1"]
    stsb = get_processor("sts-b")
    assert stsb.is_regression and stsb.get_labels() == [] and stsb.num_labels == 1
    assert not get_processor("mrpc").is_regression and get_processor("mnli").num_labels == 3
    assert get_processor("cola").metric_names == ("matthews_corrcoef",)
    assert set(PROCESSORS) >= {"mrpc", "cola", "sst-2", "sst2", "sts-b", "stsb", "rte", "wnli", "qqp", "mnli",
                               "mnli-mm", "qnli"}


# ------------------------------------------------------------------------------ reading the files


def test_missing_file_names_the_path_and_the_flag(tmp_path):
    with pytest.raises(DataError) as err:
        MrpcProcessor().get_train_examples(tmp_path)
    assert str(tmp_path / "train.tsv") in str(err.value) and "--data_dir" in str(err.value)


def test_mrpc_bom_header_and_unbalanced_quote(tmp_path):
    write(tmp_path / "train.tsv",
          "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
          '1\t11\t12\tHe said "no.\t"He said no.\n'
          "0\t13\t14\tIt rained.\tIt snowed.\n")
    examples = MrpcProcessor().get_train_examples(tmp_path)
    # quotechar=None: the stray quote stays in its field instead of swallowing the next line.
    assert examples == [InputExample("train-1", 'He said "no.', '"He said no.', "1"),
                        InputExample("train-2", "It rained.", "It snowed.", "0")]


def test_cola_headerless_labeled_files_and_test_header(tmp_path):
    write(tmp_path / "dev.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tSat cat the.")  # no final newline
    write(tmp_path / "test.tsv", "index\tsentence\n0\tA dog ran.\n")
    processor = ColaProcessor()
    assert processor.get_dev_examples(tmp_path) == [InputExample("dev-0", "The cat sat.", None, "1"),
                                                    InputExample("dev-1", "Sat cat the.", None, "0")]
    # Google skips the test header and keeps counting rows from it: the first guid is test-1.
    assert processor.get_test_examples(tmp_path) == [InputExample("test-1", "A dog ran.", None, "0")]


def test_sst2_keeps_the_trailing_space_like_google(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\nit 's a charming journey . \t1\n")
    write(tmp_path / "test.tsv", "index\tsentence\n0\tuneasy mishmash .\n")
    processor = get_processor("sst-2")
    assert processor.get_train_examples(tmp_path) == [InputExample("train-1", "it 's a charming journey . ", None, "1")]
    assert processor.get_test_examples(tmp_path)[0] == InputExample("test-1", "uneasy mishmash .", None, "0")


def test_stsb_scores_are_floats_and_test_has_nine_columns(tmp_path):
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    write(tmp_path / "dev.tsv", f"{head}\tscore\n7\tmain-news\tMSRpar\t2012\t0001\tnone\tnone\tA b.\tA c.\t3.800\n")
    write(tmp_path / "test.tsv", f"{head}\n4\tmain-news\tMSRpar\t2012\t0002\tnone\tnone\tD e.\tD f.\n")
    processor = get_processor("stsb")
    assert processor.get_dev_examples(tmp_path) == [InputExample("dev-7", "A b.", "A c.", 3.8)]
    assert processor.get_test_examples(tmp_path) == [InputExample("test-4", "D e.", "D f.", 0.0)]


@pytest.mark.parametrize(
    "task, content, line, message",
    [
        ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n0\t3\t4\tonly four\n", 3,
         "expected at least 5 tab-separated columns, found 4"),
        ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\nyes\t1\t2\ta\tb\n", 2,
         r"expected a label in \['0', '1'\], found 'yes'"),
        ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\n", 3,
         "expected at least 4 tab-separated columns, found 3"),
        ("cola", "gj04\t1\t\tFine.\n\ngj04\t0\t*\tBad.\n", 2, "found 0"),  # a blank line
        ("sts-b", "h\n0\tg\tf\ty\to\ts\ts\ta\tb\tfive\n", 2, "expected a float similarity score, found 'five'"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, task, content, line, message):
    path = write(tmp_path / "train.tsv", content)
    with pytest.raises(DataError, match=message) as err:
        get_processor(task).get_train_examples(tmp_path)
    assert f"{path}:{line}:" in str(err.value)


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff byte\t0\n")
    with pytest.raises(DataError, match=f"{path}:3: not valid UTF-8"):
        get_processor("sst-2").get_train_examples(tmp_path)


def test_csv_errors_name_the_line(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\nshort\t1\n" + "x" * 50 + "\t0\n")
    old_limit = csv.field_size_limit(20)
    try:
        with pytest.raises(DataError, match=r"train.tsv:3: field larger than field limit"):
            get_processor("sst-2").get_train_examples(tmp_path)
    finally:
        csv.field_size_limit(old_limit)


# ------------------------------------------------------------------------------ invented fixtures for the big tasks


def test_mnli_matched_and_mismatched_fixtures():
    data_dir = FIXTURES / "MNLI"
    train = MnliProcessor().get_train_examples(data_dir)
    assert [e.label for e in train] == ["entailment", "contradiction", "neutral", "contradiction"]
    assert train[0] == InputExample("train-0", "The lighthouse keeper rowed out to the island every morning.",
                                    "The keeper travelled to the island by boat.", "entailment")
    dev = MnliProcessor().get_dev_examples(data_dir)  # 16 columns: the gold label is the last one
    assert [(e.guid, e.label) for e in dev] == [("dev_matched-0", "entailment"), ("dev_matched-1", "contradiction"),
                                                ("dev_matched-2", "neutral")]
    mismatched = get_processor("mnli-mm")
    assert [e.guid for e in mismatched.get_dev_examples(data_dir)] == ["dev_mismatched-0", "dev_mismatched-1"]
    assert mismatched.get_train_examples(data_dir) == train
    test = MnliProcessor().get_test_examples(data_dir)
    assert [(e.guid, e.label) for e in test] == [("test_matched-0", "contradiction"), ("test_matched-1", "contradiction")]
    assert mismatched.get_test_examples(data_dir)[0].text_b == "The library fund received support."


def test_qqp_fixtures():
    processor = get_processor("qqp")
    train = processor.get_train_examples(FIXTURES / "QQP")
    assert train[1] == InputExample("train-202", "Why is the sky blue?", "Why are sunsets red?", "0")
    assert [e.label for e in processor.get_dev_examples(FIXTURES / "QQP")] == ["1", "0"]
    assert processor.get_test_examples(FIXTURES / "QQP") == [
        InputExample("test-0", "Can dogs eat apples?", "Are apples safe for dogs?", "0"),
        InputExample("test-1", "What causes thunder?", "How far away is the moon?", "0"),
    ]


def test_qnli_fixtures():
    processor = get_processor("qnli")
    train = processor.get_train_examples(FIXTURES / "QNLI")
    assert [e.label for e in train] == ["entailment", "not_entailment", "entailment"]
    assert train[2] == InputExample("train-2", "What do koalas eat?", "Koalas feed almost entirely on eucalyptus leaves.",
                                    "entailment")
    assert len(processor.get_dev_examples(FIXTURES / "QNLI")) == 2
    assert processor.get_test_examples(FIXTURES / "QNLI")[0].label == "entailment"


# ------------------------------------------------------------------------------ the real GLUE files


REAL_COUNTS = {
    "mrpc": ("MRPC", 3668, 408, 1725),
    "cola": ("CoLA", 8551, 1043, 1063),
    "sst-2": ("SST-2", 67349, 872, 1821),
    "sts-b": ("STS-B", 5749, 1500, 1379),
    "rte": ("RTE", 2490, 277, 3000),
    "wnli": ("WNLI", 635, 71, 146),
}


@pytest.mark.parametrize("task", sorted(REAL_COUNTS))
def test_real_glue_files_read_completely(shared_data, task):
    folder, *counts = REAL_COUNTS[task]
    processor = get_processor(task)
    data_dir = shared_data / "glue" / folder
    for split, count in zip(("train", "dev", "test"), counts):
        examples = processor.get_examples(data_dir, split)
        assert len(examples) == count
        assert len({e.guid for e in examples}) == count


def test_real_file_quirks(shared_data):
    glue = shared_data / "glue"
    mrpc_dev = MrpcProcessor().get_dev_examples(glue / "MRPC")
    assert mrpc_dev[0].text_b.startswith('"The foodservice')  # unbalanced quote survives
    assert not mrpc_dev[0].text_a.startswith("\ufeff")
    assert ColaProcessor().get_dev_examples(glue / "CoLA")[-1].guid == "dev-1042"  # last line has no newline
    assert get_processor("sst-2").get_dev_examples(glue / "SST-2")[0].text_a.endswith(". ")
    assert get_processor("sts-b").get_train_examples(glue / "STS-B")[1].label == 3.8


# ------------------------------------------------------------------------------ features


def google_convert_single_example(example, label_list, max_seq_length, tokenizer):
    """A transcription of Google's run_classifier.convert_single_example (minus logging)."""
    label_map = {}
    for (i, label) in enumerate(label_list):
        label_map[label] = i

    tokens_a = tokenizer.tokenize(example.text_a)
    tokens_b = None
    if example.text_b:
        tokens_b = tokenizer.tokenize(example.text_b)

    if tokens_b:
        # Google's _truncate_seq_pair, inlined.
        while True:
            total_length = len(tokens_a) + len(tokens_b)
            if total_length <= max_seq_length - 3:
                break
            if len(tokens_a) > len(tokens_b):
                tokens_a.pop()
            else:
                tokens_b.pop()
    else:
        if len(tokens_a) > max_seq_length - 2:
            tokens_a = tokens_a[0:(max_seq_length - 2)]

    tokens = []
    segment_ids = []
    tokens.append("[CLS]")
    segment_ids.append(0)
    for token in tokens_a:
        tokens.append(token)
        segment_ids.append(0)
    tokens.append("[SEP]")
    segment_ids.append(0)
    if tokens_b:
        for token in tokens_b:
            tokens.append(token)
            segment_ids.append(1)
        tokens.append("[SEP]")
        segment_ids.append(1)

    input_ids = tokenizer.convert_tokens_to_ids(tokens)
    input_mask = [1] * len(input_ids)
    while len(input_ids) < max_seq_length:
        input_ids.append(0)
        input_mask.append(0)
        segment_ids.append(0)

    label_id = label_map[example.label]
    # Google's InputFeatures(input_ids, input_mask, segment_ids, label_id), under the model's argument names.
    return ClassifierFeatures(input_ids=input_ids, attention_mask=input_mask, token_type_ids=segment_ids,
                              labels=label_id, is_real_example=True)


class MemoTokenizer:
    """Tokenizes each text once: the comparison below is about conversion, not tokenization."""

    def __init__(self, tokenizer):
        self.tokenizer, self.memo = tokenizer, {}

    def tokenize(self, text):
        if text not in self.memo:
            self.memo[text] = self.tokenizer.tokenize(text)
        return list(self.memo[text])  # a fresh list: truncation pops in place

    def convert_tokens_to_ids(self, tokens):
        return self.tokenizer.convert_tokens_to_ids(tokens)


@pytest.fixture(scope="module")
def uncased_tokenizer(shared_data):
    return MemoTokenizer(FullTokenizer(str(shared_data / "vocab" / "bert-base-uncased" / "vocab.txt"), do_lower_case=True))


@pytest.mark.parametrize("max_seq_length", [128, 40])  # 40 truncates most MRPC pairs
def test_features_match_google_on_every_mrpc_row(shared_data, uncased_tokenizer, max_seq_length):
    processor = MrpcProcessor()
    mrpc = shared_data / "glue" / "MRPC"
    examples = processor.get_train_examples(mrpc) + processor.get_dev_examples(mrpc)
    labels = processor.get_labels()
    ours = convert_examples_to_features(examples, labels, max_seq_length, uncased_tokenizer, progress=False)
    google = [google_convert_single_example(e, labels, max_seq_length, uncased_tokenizer) for e in examples]
    assert len(ours) == len(google) == 4076
    mismatches = [e.guid for e, a, b in zip(examples, ours, google) if a != b]
    assert mismatches == []
    unpadded = convert_examples_to_features(examples, labels, max_seq_length, uncased_tokenizer,
                                            pad_to_max_length=False, progress=False)
    for padded, short in zip(ours, unpadded):
        n = len(short.input_ids)
        assert short.attention_mask == [1] * n and padded.input_ids[:n] == short.input_ids
        assert padded.token_type_ids[:n] == short.token_type_ids
        assert padded.attention_mask[n:] == [0] * (max_seq_length - n)


class CharTokenizer:
    """A toy tokenizer: one token per character, ids are code points."""

    def tokenize(self, text):
        return list(text.replace(" ", ""))

    def convert_tokens_to_ids(self, tokens):
        return [{"[CLS]": 101, "[SEP]": 102}.get(t, ord(t[0])) for t in tokens]


def test_single_sequence_truncation_and_empty_second_text():
    tokenizer = CharTokenizer()
    feature = convert_single_example(0, InputExample("x", "abcdefgh", None, "0"), ["0"], 6, tokenizer, log=False)
    assert feature.input_ids == [101, 97, 98, 99, 100, 102] and feature.labels == 0
    # Google treats an empty (or all-whitespace) text_b as a single-sequence example.
    for text_b in ("", "   "):
        feature = convert_single_example(0, InputExample("x", "ab", text_b, "0"), ["0"], 6, tokenizer, log=False)
        assert feature.input_ids == [101, 97, 98, 102, 0, 0] and feature.token_type_ids == [0] * 6


def test_pair_truncation_trims_the_longer_side_first():
    feature = convert_single_example(0, InputExample("x", "abcdef", "xy", "1"), ["0", "1"], 8, CharTokenizer(),
                                     pad_to_max_length=False, log=False)
    assert feature.input_ids == [101, 97, 98, 99, 102, 120, 121, 102]
    assert feature.token_type_ids == [0, 0, 0, 0, 0, 1, 1, 1] and feature.labels == 1


def test_regression_label_and_padding_example():
    feature = convert_single_example(0, InputExample("x", "ab", "cd", 3.8), [], 8, CharTokenizer(), log=False)
    assert feature.labels == 3.8 and isinstance(feature.labels, float)
    padding = convert_single_example(0, PaddingInputExample(), ["0", "1"], 4, CharTokenizer())
    assert padding == ClassifierFeatures([0] * 4, [0] * 4, [0] * 4, labels=0, is_real_example=False)


def test_unknown_label_is_a_data_error():
    with pytest.raises(DataError, match="example dev-3: label 'maybe' is not one of"):
        convert_single_example(0, InputExample("dev-3", "a", None, "maybe"), ["0", "1"], 8, CharTokenizer())


def test_first_five_examples_are_logged_like_google(caplog):
    examples = [InputExample(f"train-{i}", "ab", "c", "1") for i in range(7)]
    # DEBUG: the CLI shows them with -v only (tests/test_cli.py::test_the_first_examples_token_ids_only_with_v)
    with caplog.at_level(logging.DEBUG, logger="bertkit.data.glue"):
        convert_examples_to_features(examples, ["0", "1"], 6, CharTokenizer())
    messages = [r.getMessage() for r in caplog.records if r.name == "bertkit.data.glue"]
    assert messages[:7] == [
        "*** Example ***",
        "guid: train-0",
        "tokens: [CLS] a b [SEP] c [SEP]",
        "input_ids: 101 97 98 102 99 102",
        "input_mask: 1 1 1 1 1 1",
        "segment_ids: 0 0 0 0 1 1",
        "label: 1 (id = 1)",
    ]
    assert messages.count("*** Example ***") == 5 and "guid: train-5" not in messages


# ------------------------------------------------------------------------------ the synthetic quick-start sample


def load_sample_generator():
    spec = importlib.util.spec_from_file_location("make_mrpc_sample", REPO / "tools" / "make_mrpc_sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mrpc_sample_reads_with_the_mrpc_processor():
    processor = MrpcProcessor()
    train = processor.get_train_examples(SAMPLE_DIR)
    dev = processor.get_dev_examples(SAMPLE_DIR)
    test = processor.get_test_examples(SAMPLE_DIR)
    assert (len(train), len(dev), len(test)) == (400, 100, 50)
    for split in (train, dev):
        positives = sum(e.label == "1" for e in split) / len(split)
        assert 0.4 < positives < 0.7
    texts = {e.text_a for e in train} | {e.text_b for e in train}
    assert not texts & ({e.text_a for e in dev} | {e.text_b for e in dev})  # no sentence shared across splits


def test_mrpc_sample_files_are_what_the_generator_writes(tmp_path):
    load_sample_generator().main(["--out", str(tmp_path)])
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name
