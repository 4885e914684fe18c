"""run_ner: seqeval metrics, prediction files, and the CLI end to end on a tiny CoNLL fixture."""

import json
from pathlib import Path

import numpy as np
import pytest
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

from bertkit.cli.main import main
from bertkit.data.ner import NerExample, read_conll
from bertkit.tasks.ner import NerTask, ner_metrics, write_conll_predictions
from bertkit.tokenization import FullTokenizer
from helpers import TINY_VOCAB as VOCAB, google_tiny_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ner"

HAND_CASES = [
    # gold, predicted
    ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]]),  # perfect
    ([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "O", "O", "B-ORG"]]),  # wrong span, wrong type
    ([["B-ORG", "I-ORG", "O"], ["B-MISC", "O"]], [["I-ORG", "I-ORG", "O"], ["O", "B-MISC"]]),  # I- starts an entity
    ([["B-LOC", "B-LOC", "O"]], [["B-LOC", "I-LOC", "O"]]),  # two adjacent entities predicted as one
    ([["O", "O"]], [["B-PER", "O"]]),  # nothing to find, one false positive
    ([["B-PER", "O"], ["B-LOC", "I-LOC"]], [["O", "O"], ["O", "O"]]),  # nothing predicted
]


def _results(path: Path) -> dict:
    return dict(line.split(" = ") for line in path.read_text().splitlines())


@pytest.mark.parametrize("gold, predicted", HAND_CASES)
def test_metrics_are_seqevals(gold, predicted):
    metrics = ner_metrics(gold, predicted, ["LOC", "MISC", "ORG", "PER"])
    assert metrics["precision"] == pytest.approx(precision_score(gold, predicted, zero_division=0))
    assert metrics["recall"] == pytest.approx(recall_score(gold, predicted, zero_division=0))
    assert metrics["f1"] == pytest.approx(f1_score(gold, predicted, zero_division=0))
    assert metrics["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    for name in ("LOC", "MISC", "ORG", "PER"):
        row = report.get(name, {"precision": 0, "recall": 0, "f1-score": 0, "support": 0})
        assert metrics[f"{name}_precision"] == pytest.approx(row["precision"])
        assert metrics[f"{name}_recall"] == pytest.approx(row["recall"])
        assert metrics[f"{name}_f1"] == pytest.approx(row["f1-score"])
        assert metrics[f"{name}_support"] == row["support"]


def test_a_hand_computed_case():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"]]
    predicted = [["B-PER", "I-PER", "O", "B-ORG", "O", "B-ORG"]]  # 2 of 3 found, 2 of 3 predicted right
    metrics = ner_metrics(gold, predicted)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["ORG_precision"] == 0.5 and metrics["ORG_recall"] == 1.0 and metrics["LOC_recall"] == 0.0
    assert metrics["PER_f1"] == 1.0 and metrics["accuracy"] == pytest.approx(5 / 6)


def test_evaluation_scores_word_tags_from_windowed_token_predictions(tmp_path):
    tokenizer = FullTokenizer(VOCAB, do_lower_case=True)
    labels = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER"]
    task = NerTask(data_dir=str(FIXTURES), max_seq_length=8, do_eval=True, label_list=labels)  # windows in testb's long sentence
    split = task.dataset("test", tokenizer, None)
    assert len(split.features) > len(split.examples)
    # Predict the gold label at every labelled position: the words' tags come back exactly.
    predictions = np.array([f.labels + [-100] * (8 - len(f.labels)) for f in split.features])
    predictions = np.where(predictions < 0, 0, predictions)
    metrics = task.metrics(split, predictions)
    assert task.tags(split, predictions) == [e.labels for e in split.examples]
    assert metrics["f1"] == 1.0 and metrics["support"] == 5 and metrics["MISC_support"] == 0
    write_conll_predictions(tmp_path / "p.txt", split.examples, task.tags(split, predictions))
    assert read_conll(tmp_path / "p.txt", label_column=1)[0].words == split.examples[0].words
    assert (tmp_path / "p.txt").read_text().startswith("John B-PER B-PER\nand O O\nMary B-PER B-PER\n")
    write_conll_predictions(tmp_path / "u.txt", [NerExample("u", ["a", "b"])], [["O", "B-PER"]])
    assert (tmp_path / "u.txt").read_text() == "a O\nb B-PER\n\n"


def _cli(tmp_path, *extra):
    return ["-q", "run_ner", f"--data_dir={FIXTURES}", f"--vocab_file={VOCAB}", "--max_seq_length=16",
            "--train_batch_size=4", "--no_progress", *extra]


def test_cli_end_to_end_from_scratch_then_eval_with_the_saved_labels(tmp_path, capsys):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64)))
    out = tmp_path / "out"
    assert main(_cli(tmp_path, "--do_train=true", "--do_eval=true", "--do_predict=true", f"--bert_config_file={config}",
                     "--max_steps=3", f"--output_dir={out}")) == 0
    assert "test_f1 = " in capsys.readouterr().out
    results = _results(out / "eval_results.txt")
    assert results["global_step"] == "3"
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_loss", "eval_PER_f1",
            "eval_LOC_support"} <= set(results)
    assert _results(out / "test_results.txt")["test_ORG_support"] == "2.0"
    summary = json.loads((out / "test_results.json").read_text())
    assert summary["global_step"] == 3 and set(summary["per_type"]) == {"LOC", "MISC", "ORG", "PER"}
    assert summary["support"] == 5 and 0 <= summary["f1"] <= 1
    assert "micro avg" in (out / "eval_per_type.txt").read_text()
    saved = json.loads((out / "config.json").read_text())
    labels = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-ORG", "I-PER"]
    assert saved["id2label"] == {str(i): label for i, label in enumerate(labels)} and saved["num_labels"] == 7
    for split, name in (("dev", "eng.testa"), ("test", "eng.testb")):
        lines = (out / f"predictions_{split}.txt").read_text().split("\n\n")
        gold = read_conll(FIXTURES / name)
        written = [[row.split() for row in block.splitlines()] for block in lines if block.strip()]
        assert [[r[0] for r in s] for s in written] == [e.words for e in gold]  # every word, once, in order
        assert [[r[1] for r in s] for s in written] == [e.labels for e in gold]
        assert all(len(r) == 3 and r[2] in saved["label2id"] for s in written for r in s)

    # Evaluating the fine-tuned model: the labels come from its config.json, not the training file.
    again = tmp_path / "again"
    assert main(_cli(tmp_path, "--do_eval=true", f"--init_checkpoint={out}", "--train_file=nope",
                     f"--output_dir={again}")) == 0
    assert _results(again / "eval_results.txt")["eval_f1"] == results["eval_f1"]


def test_cli_on_two_column_files_with_unlabelled_test_text(tmp_path):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64)))
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text((FIXTURES / "two_column.txt").read_text())
    (data / "text.txt").write_text("John\nlives\n\nin\nBerlin\n")
    out = tmp_path / "out"
    assert main(["-q", "run_ner", f"--data_dir={data}", "--train_file=train.txt", "--test_file=text.txt",
                 "--test_has_labels=false", f"--vocab_file={VOCAB}", f"--bert_config_file={config}",
                 "--do_train=true", "--do_predict=true", "--max_steps=1", "--max_seq_length=16", "--no_progress",
                 f"--output_dir={out}"]) == 0
    blocks = (out / "predictions_test.txt").read_text().split("\n\n")
    assert [[row.split()[0] for row in b.splitlines()] for b in blocks if b] == [["John", "lives"], ["in", "Berlin"]]
    assert not (out / "test_results.txt").exists()


@pytest.mark.parametrize("files, message", [
    ({"eng.train": "EU NNP I-NP I-ORG\nrejects VBZ I-VP\n"}, "eng.train:2: expected 4 columns as on line 1, got 3"),
    ({"eng.testa": "Paris NNP I-NP I-LOC\n\nRome NNP I-NP I-CITY\n"},
     "eng.testa:3: label 'B-CITY' is not one of the model's 7 labels"),
])
def test_malformed_files_are_one_line_errors_naming_file_and_line(tmp_path, capsys, files, message):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("eng.train", "eng.testa"):
        (data / name).write_text(files.get(name, (FIXTURES / name).read_text()))
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64)))
    assert main(["run_ner", f"--data_dir={data}", f"--vocab_file={VOCAB}", f"--bert_config_file={config}",
                 "--do_train=true", "--do_eval=true", "--max_steps=1", "--max_seq_length=16",
                 f"--output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert f"{data / next(iter(files))}" in err and message in err and "Traceback" not in err


ZH_CHARS = list("我在北京新华社记者年月日上海说的了是中国人民银行") + list("0123456789")


def _zh_vocab(path: Path) -> Path:
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *ZH_CHARS]) + "\n", encoding="utf-8")
    return path


def _char_lines(sentences) -> str:
    return "\n\n".join("\n".join(f"{char} {tag}" for char, tag in sentence) for sentence in sentences) + "\n"


ZH_TRAIN = [list(zip("新华社记者在北京", ["B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "B-LOC", "I-LOC"])),
            list(zip("2006年我在上海", ["O"] * 5 + ["O", "O", "B-LOC", "I-LOC"]))]


def test_cli_on_chinese_characters_records_scheme_and_word_unit(tmp_path):
    """One character per line (the Chinese NER format), a BIOES JSONL dev file for the IOB2 model,
    and a BIOES training file that gives a BIOES model."""
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64, vocab_size=len(ZH_CHARS) + 5)))
    vocab = _zh_vocab(tmp_path / "vocab.txt")
    (tmp_path / "train.txt").write_text(_char_lines(ZH_TRAIN), encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text(json.dumps(
        {"tokens": list("中国人民银行在北京"), "ner_tags": ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "E-ORG", "O",
                                                           "B-LOC", "E-LOC"]}, ensure_ascii=False) + "\n",
        encoding="utf-8")
    common = [f"--vocab_file={vocab}", f"--bert_config_file={config}", "--max_seq_length=16", "--train_batch_size=2",
              "--no_progress", "--max_steps=1", "--do_train=true", "--do_eval=true",
              f"--train_file={tmp_path / 'train.txt'}", f"--eval_file={tmp_path / 'dev.jsonl'}"]
    out = tmp_path / "iob2"
    assert main(["-q", "run_ner", *common, f"--output_dir={out}"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["label_scheme"] == "IOB2" and saved["source_label_scheme"] == "IOB2" and saved["word_unit"] == "char"
    assert set(saved["label2id"]) == {"O", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    assert json.loads((out / "eval_results.json").read_text())["support"] == 2  # the BIOES dev file, as IOB2

    (tmp_path / "train_bioes.txt").write_text(_char_lines(
        [[(c, t.replace("I-ORG", "E-ORG") if i == 2 else t.replace("I-LOC", "E-LOC")) for i, (c, t) in enumerate(s)]
         for s in ZH_TRAIN[:1]] + [list(zip("我在上海", ["O", "O", "S-LOC", "S-LOC"]))]), encoding="utf-8")
    out = tmp_path / "bioes"
    assert main(["-q", "run_ner", *common[:-2], f"--train_file={tmp_path / 'train_bioes.txt'}",
                 f"--eval_file={tmp_path / 'dev.jsonl'}", f"--output_dir={out}"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["label_scheme"] == "BIOES" and set(saved["label2id"]) == {"O", "B-ORG", "I-ORG", "E-ORG", "E-LOC",
                                                                           "B-LOC", "S-LOC"}
    # Evaluating the saved model reads its scheme from config.json.
    again = tmp_path / "again"
    assert main(["-q", "run_ner", "--do_eval=true", f"--init_checkpoint={out}", "--max_seq_length=16",
                 "--no_progress", f"--eval_file={tmp_path / 'dev.jsonl'}", f"--output_dir={again}"]) == 0
    assert (_results(again / "eval_results.txt")["eval_f1"] == _results(out / "eval_results.txt")["eval_f1"])


def test_cli_on_integer_jsonl_tags_with_label_list(tmp_path, capsys):
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64)))
    names = "O,B-PER,I-PER,B-ORG,I-ORG,B-LOC,I-LOC,B-MISC,I-MISC"
    records = [{"tokens": ["John", "lives", "in", "New", "York"], "ner_tags": [1, 0, 0, 5, 6]},
               {"tokens": ["Mary", "and", "John"], "ner_tags": [1, 0, 1]}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = ["-q", "run_ner", f"--vocab_file={VOCAB}", f"--bert_config_file={config}", "--max_seq_length=16",
            "--no_progress", "--max_steps=1", "--do_train=true", "--do_eval=true",
            f"--train_file={tmp_path / 'train.jsonl'}", f"--eval_file={tmp_path / 'train.jsonl'}",
            f"--output_dir={tmp_path / 'out'}"]
    assert main(argv + [f"--label_list={names}"]) == 0
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert set(saved["label2id"]) == {"O", "B-PER", "B-LOC", "I-LOC"} and "word_unit" not in saved
    # Without the names: one line naming the file and line, and nothing trained.
    assert main(argv[:-1] + [f"--output_dir={tmp_path / 'bad'}"]) != 0
    err = capsys.readouterr().err
    assert f"{tmp_path / 'train.jsonl'}:1: ner_tags are integers" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
