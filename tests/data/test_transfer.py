"""Transfer sets for distillation: parsing, word masking, the extended training set, and the CLI."""

import json
import random
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.data.transfer import (MASK_PROBABILITY, TransferSource, mask_words, parse_transfer_set,
                                       with_transfer_set)
from bertkit.data.glue import InputExample, get_processor
from bertkit.errors import ConfigError, DataError
from bertkit.tasks.classifier import ClassifierTask, build_dataset
from bertkit.tokenization import FullTokenizer

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
QQP = ROOT / "tests" / "fixtures" / "glue" / "QQP"
TEACHER = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_classifier"


def test_parse_transfer_set():
    assert parse_transfer_set(None) == [] and parse_transfer_set("none") == []
    assert parse_transfer_set(f"swap, mask:3,QQP={QQP}") == [
        TransferSource("swap"), TransferSource("mask", copies=3), TransferSource("task", task_name="QQP",
                                                                                data_dir=str(QQP))]


@pytest.mark.parametrize("text, error, message", [
    ("shuffle", ConfigError, "'shuffle' is not a source; use swap, mask:K"),
    ("mask:0", ConfigError, "'mask:0' is not a source"),
    ("QQP=/no/such/dir", ConfigError, "/no/such/dir is not a directory"),
    (f"QQQ={QQP}", DataError, "unknown task 'QQQ'"),
])
def test_bad_transfer_sets_say_what_to_write(text, error, message):
    with pytest.raises(error, match=message):
        parse_transfer_set(text)


def test_mask_words_masks_whole_words_and_never_special_tokens():
    cls, sep, mask, head, tail = 1, 2, 3, 10, 11  # tail: a ## continuation piece
    ids = [cls] + [head, tail, 20] * 2000 + [sep, 20, head, tail, sep]
    out = mask_words(ids, continuation={tail}, special={cls, sep}, mask_id=mask, rng=random.Random(0))
    assert out[0] == cls and out[-1] == sep and out.count(sep) == 2
    for i, token in enumerate(ids):
        if token == tail:  # a continuation piece is masked exactly when the piece before it is
            assert (out[i] == mask) == (out[i - 1] == mask)
    words = [i for i, token in enumerate(ids) if token in (head, 20)]
    rate = sum(out[i] == mask for i in words) / len(words)
    assert abs(rate - MASK_PROBABILITY) < 0.02


def _mrpc():
    tokenizer = FullTokenizer(TEACHER / "vocab.txt")
    processor = get_processor("MRPC")
    task = ClassifierTask("MRPC", str(SAMPLE), 48, do_train=True, cache_dir=None)
    examples, train = build_dataset(processor, task, "train", tokenizer, str(TEACHER / "vocab.txt"), False, False)
    return tokenizer, processor, examples, train


def test_transfer_examples_follow_the_training_set_unlabelled():
    tokenizer, processor, examples, train = _mrpc()
    sources = parse_transfer_set(f"swap,mask:2,QQP={QQP}")
    extended = with_transfer_set(train, sources, processor, examples, tokenizer, 48, seed=1)
    qqp = get_processor("QQP").get_examples(str(QQP), "train")
    assert len(extended) == 4 * len(train) + len(qqp)
    assert len(extended.lengths) == len(extended) and extended.lengths[:len(train)] == train.lengths
    assert [extended[i] for i in range(len(train))] == [train[i] for i in range(len(train))]
    assert all(extended[i]["labels"] == -100 for i in range(len(train), len(extended)))
    # A swapped pair is the example with its texts exchanged: segment B comes first.
    first = examples[0]
    swapped = extended[len(train)]
    a, b = tokenizer.tokenize(first.text_a), tokenizer.tokenize(first.text_b)
    assert swapped["input_ids"] == tokenizer.convert_tokens_to_ids(["[CLS]", *b, "[SEP]", *a, "[SEP]"])
    assert swapped["token_type_ids"] == [0] * (len(b) + 2) + [1] * (len(a) + 1)
    # Masked copies keep everything but some word pieces.
    mask_id = tokenizer.vocab["[MASK]"]
    copies = [extended[2 * len(train) + k * len(train)] for k in range(2)]
    original = train[0]
    for copy in copies:
        assert copy["token_type_ids"] == original["token_type_ids"]
        assert all(c == o or c == mask_id for c, o in zip(copy["input_ids"], original["input_ids"]))
    masked = sum(c == mask_id for k in range(2 * len(train)) for c in extended[2 * len(train) + k]["input_ids"])
    assert masked > 0
    # Deterministic under the seed.
    again = with_transfer_set(train, sources, processor, examples, tokenizer, 48, seed=1)
    assert [again[i] for i in range(len(again))] == [extended[i] for i in range(len(extended))]


def test_transfer_sets_that_cannot_fit_the_task(tmp_path):
    tokenizer, processor, examples, train = _mrpc()
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\na fine film \t1\n")
    with pytest.raises(ConfigError, match="SST-2 has single sentences but the task has pairs"):
        with_transfer_set(train, parse_transfer_set(f"SST-2={tmp_path / 'SST-2'}"), processor, examples,
                          tokenizer, 48)
    singles = [InputExample("train-1", "a fine film")]
    with pytest.raises(ConfigError, match="swap needs a sentence-pair task"):
        with_transfer_set(train, [TransferSource("swap")], get_processor("SST-2"), singles, tokenizer, 48)
    with pytest.raises(ConfigError, match="need a classification task"):
        with_transfer_set(train, [TransferSource("swap")], get_processor("STS-B"), examples, tokenizer, 48)
    assert with_transfer_set(train, [], processor, examples, tokenizer, 48) is train


def test_distill_with_a_transfer_set(tmp_path, capsys, caplog):
    out = tmp_path / "student"
    argv = ["distill", f"--teacher={TEACHER}", "--task_name=MRPC", f"--data_dir={SAMPLE}", "--max_seq_length=48",
            "--cache_dir=none", "--student_layers=1", "--do_train", "--do_eval", "--train_batch_size=16",
            "--num_train_epochs=1", "--max_train_examples=32", f"--transfer_set=swap,mask:1,QQP={QQP}",
            f"--teacher_cache_dir={tmp_path / 'cache'}", f"--output_dir={out}", "--no_progress",
            "--save_checkpoints_steps=100"]
    with caplog.at_level("INFO", logger="bertkit"):
        assert main(argv) == 0
    qqp = len(get_processor("QQP").get_examples(str(QQP), "train"))
    assert f"transfer set: 32 swapped pairs; 32 masked copies (1 per input); {qqp} QQP training inputs" in caplog.text
    record = json.loads((out / "distillation.json").read_text())
    assert record["transfer_set"] == f"swap,mask:1,QQP={QQP}"
    # 32 labelled + 32 + 32 + the QQP inputs, in batches of 16, one epoch
    assert record["results"]["global_step"] == -(-(96 + qqp) // 16)
    assert "eval_accuracy = " in capsys.readouterr().out


def test_distill_refuses_a_bad_transfer_set(tmp_path, capsys):
    argv = ["distill", f"--teacher={TEACHER}", "--task_name=MRPC", f"--data_dir={SAMPLE}", "--do_train",
            "--transfer_set=mask", f"--output_dir={tmp_path}"]
    assert main(argv) == 2
    assert "'mask' is not a source; use swap, mask:K" in capsys.readouterr().err
