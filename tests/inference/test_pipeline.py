"""pipeline(): every head, trained for a few steps by its own runner on MiniLM, predicts through
the pipeline exactly what the runner's --do_predict wrote, and matches transformers' pipeline.
These compare with fp32 references, so they pin dtype="fp32" (auto picks bf16 or int8 by CPU;
tests/inference/test_precision.py covers those paths)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from bertkit.cli.main import main
from bertkit.errors import ConfigError
from bertkit.inference.pipeline import pipeline

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "data" / "mrpc_sample"
FIXTURES = ROOT / "tests" / "fixtures"


def _train(argv: list[str]) -> None:
    assert main(["-q", *argv, "--no_progress", "--cache_dir=none"] if "run_classifier" in argv
                else ["-q", *argv, "--no_progress"]) == 0


@pytest.fixture(scope="module")
def mrpc(tmp_path_factory, minilm_path):
    out = tmp_path_factory.mktemp("mrpc")
    _train(["run_classifier", "--task_name=MRPC", "--do_train", "--do_predict", f"--data_dir={SAMPLE}",
            f"--init_checkpoint={minilm_path}", "--max_seq_length=48", "--max_steps=3", "--train_batch_size=16",
            "--learning_rate=1e-4", f"--output_dir={out}"])
    return out


@pytest.fixture(scope="module")
def ner(tmp_path_factory, minilm_path):
    out = tmp_path_factory.mktemp("ner")
    _train(["run_ner", f"--data_dir={FIXTURES / 'ner'}", "--do_train", "--do_predict", f"--init_checkpoint={minilm_path}",
            "--max_seq_length=16", "--max_steps=3", "--train_batch_size=8", "--learning_rate=1e-3", f"--output_dir={out}"])
    return out


@pytest.fixture(scope="module")
def squad(tmp_path_factory, minilm_path):
    out = tmp_path_factory.mktemp("squad")
    _train(["run_squad", f"--train_file={FIXTURES / 'squad' / 'tiny-v1.1.json'}", "--split_articles=1", "--do_train",
            "--do_predict", "--max_seq_length=48", "--doc_stride=16", "--max_query_length=16",
            f"--init_checkpoint={minilm_path}", "--max_steps=3", "--train_batch_size=4", f"--output_dir={out}"])
    return out


def test_classification_equals_the_runners_test_results(mrpc):
    p = pipeline(mrpc, dtype="fp32")
    assert p.task == "text-classification" and p.max_seq_length == 48 and p.labels == ["0", "1"]
    with open(SAMPLE / "test.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    answers = p([(row[3], row[4]) for row in rows], top_k=None)
    written = [list(map(float, line.split("\t"))) for line in (mrpc / "test_results.tsv").read_text().splitlines()]
    got = [[next(a["score"] for a in answer if a["label"] == label) for label in ("0", "1")] for answer in answers]
    np.testing.assert_allclose(got, written, atol=2e-6)
    # One pair as two arguments, and the default top_k=1: transformers' shapes.
    single = p(rows[0][3], rows[0][4])
    assert isinstance(single, list) and len(single) == 1 and set(single[0]) == {"label", "score"}
    assert p([{"text": rows[0][3], "text_pair": rows[0][4]}]) == single


def test_saved_config_knows_its_task(mrpc):
    config = json.loads((mrpc / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "0", "1": "1"} and config["label2id"] == {"0": 0, "1": 1}
    assert config["finetuning_task"] == "mrpc" and config["max_seq_length"] == 48 and config["do_lower_case"] is True
    assert "_name_or_path" not in config and "transformers_version" not in config


def test_classification_equals_transformers_pipeline(mrpc, transformers_module):
    theirs = transformers_module.pipeline("text-classification", model=str(mrpc), top_k=None, device="cpu")
    texts = ["The cat sat on the mat.", "Stocks fell sharply on Monday after the report."]
    ours = pipeline(mrpc, dtype="fp32")(texts, top_k=None)
    for mine, reference in zip(ours, theirs(texts)):
        assert [a["label"] for a in mine] == [a["label"] for a in reference]
        np.testing.assert_allclose([a["score"] for a in mine], [a["score"] for a in reference], atol=1e-4)


def test_ner_equals_the_runners_predictions_and_offsets_slice_the_text(ner):
    p = pipeline(ner, dtype="fp32")
    assert p.task == "token-classification"
    blocks = [b for b in (ner / "predictions_test.txt").read_text().split("\n\n") if b.strip()]
    compared = 0
    for block in blocks:
        rows = [line.split() for line in block.splitlines()]
        words, predicted = [r[0] for r in rows], [r[-1] for r in rows]
        text = " ".join(words)
        if [w for w, _, _ in p.tokenizer.words_with_offsets(text)] != [w.lower() for w in words]:
            continue  # words the basic tokenizer splits further (e.g. "U.S.") are not comparable one to one
        tags = p(text, aggregate=False)
        expected = [(word, tag) for word, tag in zip(words, predicted) if tag != "O"]
        assert [(t["word"], t["entity"]) for t in tags] == expected
        for entity in p(text):
            assert text[entity["start"]:entity["end"]] == entity["word"] and 0 < entity["score"] <= 1
        compared += 1
    assert compared >= len(blocks) // 2


def test_ner_offsets_keep_the_callers_spelling(ner):
    text = "Grüße aus MÜNCHEN und 北京,  sagte Zoë."
    p = pipeline(ner, dtype="fp32")
    for tag in p(text, aggregate=False):
        assert text[tag["start"]:tag["end"]] == tag["word"]
    words = p.tokenizer.words_with_offsets(text)
    assert [text[s:e] for _, s, e in words] == ["Grüße", "aus", "MÜNCHEN", "und", "北", "京", ",", "sagte", "Zoë", "."]


def test_question_answering_equals_the_runners_predictions(squad):
    p = pipeline(squad, dtype="fp32")
    assert p.task == "question-answering" and p.options["doc_stride"] == 16
    predictions = json.loads((squad / "predictions.json").read_text())
    articles = json.loads((FIXTURES / "squad" / "tiny-v1.1.json").read_text())["data"][1:]
    for article in articles:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answer = p(question=qa["question"], context=context)
                assert context[answer["start"]:answer["end"]] == answer["answer"]
                assert " ".join(answer["answer"].split()) == predictions[qa["id"]]
                assert 0 < answer["score"] <= 1


def test_multiple_choice_equals_the_runners_predictions(tmp_path, minilm_path):
    data = FIXTURES / "multiple_choice" / "commonsenseqa"
    _train(["run_multiple_choice", "--task=commonsenseqa", f"--data_dir={data}", "--do_train", "--do_predict",
            f"--init_checkpoint={minilm_path}", "--max_seq_length=32", "--train_batch_size=2", "--max_steps=2",
            f"--output_dir={tmp_path}"])
    p = pipeline(tmp_path, dtype="fp32")
    written = [json.loads(line) for line in (tmp_path / "test_predictions.jsonl").read_text().splitlines()]
    records = [json.loads(line) for line in next(data.glob("test*")).read_text().splitlines()]
    for record, expected in zip(records, written):
        answer = p(record["question"]["stem"], choices=[c["text"] for c in record["question"]["choices"]])
        np.testing.assert_allclose(answer["scores"], expected["probabilities"], atol=2e-6)
        assert answer["choice"] == int(np.argmax(expected["probabilities"]))


def test_fill_mask_equals_transformers_pipeline(tmp_path, minilm_path, transformers_module):
    corpus = tmp_path / "corpus.txt"
    with open(SAMPLE / "train.tsv", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[1:41]
    corpus.write_text("".join(f"{r[3]}\n{r[4]}\n\n" for r in rows), encoding="utf-8")
    assert main(["-q", "create_pretraining_data", f"--input_file={corpus}", f"--output_dir={tmp_path / 'shards'}",
                 f"--vocab_file={minilm_path / 'vocab.txt'}", "--max_seq_length=32", "--max_predictions_per_seq=5",
                 "--dupe_factor=1"]) == 0
    _train(["run_pretraining", f"--input_file={tmp_path / 'shards'}", f"--init_checkpoint={minilm_path}",
            "--do_train", "--max_steps=2", "--train_batch_size=4", "--max_seq_length=32",
            "--max_predictions_per_seq=5", f"--output_dir={tmp_path / 'out'}"])
    p = pipeline(tmp_path / "out", dtype="fp32")
    assert p.task == "fill-mask"
    text = "Paris is the [MASK] of France."
    ours = p(text, top_k=5)
    theirs = transformers_module.pipeline("fill-mask", model=str(tmp_path / "out"), device="cpu")(text, top_k=5)
    assert [a["token"] for a in ours] == [a["token"] for a in theirs]
    np.testing.assert_allclose([a["score"] for a in ours], [a["score"] for a in theirs], atol=1e-4)
    assert all("[MASK]" not in a["sequence"] for a in ours)
    two = p("The [MASK] sat on the [MASK].", top_k=2)
    assert len(two) == 2 and all(len(candidates) == 2 for candidates in two)


def test_embeddings_equal_sentence_transformers(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The sky is blue today, isn't it?"]
    ours = np.array(pipeline(dtype="fp32")(texts))
    reference = st.SentenceTransformer(str(minilm_path), device="cpu").encode(texts)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    assert pipeline(dtype="fp32").options == {"pooling": "mean", "normalize": True, "stride": None}
    # A call's own pooling, also where one batch mixes calls (as a server's does).
    p = pipeline(dtype="fp32")
    cls_vector = np.array(p(texts[0], pooling="cls", normalize=False))
    features = p.preprocess((texts[0], None), pooling="cls") + p.preprocess((texts[1], None), pooling="mean")
    mixed = p.forward(features)
    np.testing.assert_allclose(mixed[0], cls_vector, atol=1e-5)
    np.testing.assert_allclose(mixed[1] / np.linalg.norm(mixed[1]), ours[1], atol=1e-5)


def test_long_inputs_are_truncated_with_a_count(mrpc, caplog):
    p = pipeline(mrpc, dtype="fp32")
    with caplog.at_level("INFO", logger="bertkit"):
        answers = p(["word " * 500, "short"])
    assert len(answers) == 2 and "1 of 2 inputs were longer than max_seq_length=48" in caplog.text


def test_bad_calls_are_clear_errors(mrpc, minilm_path):
    p = pipeline(mrpc, dtype="fp32")
    with pytest.raises(ConfigError, match="takes texts"):
        p("a", nonsense=1)
    with pytest.raises(ConfigError, match="must be a string"):
        p([1, 2])
    with pytest.raises(ConfigError, match="no trained fill-mask head"):
        pipeline(minilm_path, task="fill-mask")
    with pytest.raises(ConfigError, match="unknown task"):
        pipeline(mrpc, task="translation")


@pytest.fixture(scope="module")
def chinese_ner(tmp_path_factory):
    """A model trained (one step, from scratch) on one character per line: config.json says word_unit char."""
    from helpers import google_tiny_config

    out = tmp_path_factory.mktemp("zh_ner")
    chars = list("新华社记者在北京上海年我说") + list("0123456789")
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n",
                                   encoding="utf-8")
    (out / "bert_config.json").write_text(json.dumps(google_tiny_config(vocab_size=len(chars) + 5,
                                                                        max_position_embeddings=64)))
    (out / "train.txt").write_text("新 B-ORG\n华 I-ORG\n社 E-ORG\n在 O\n北 B-LOC\n京 E-LOC\n\n我 O\n在 O\n沪 S-LOC\n",
                                   encoding="utf-8")
    _train(["run_ner", f"--train_file={out / 'train.txt'}", "--do_train", f"--vocab_file={out / 'vocab.txt'}",
            f"--bert_config_file={out / 'bert_config.json'}", "--max_seq_length=16", "--max_steps=1",
            f"--output_dir={out / 'model'}"])
    return out / "model"


def test_chinese_ner_entities_slice_the_text_character_by_character(chinese_ner, monkeypatch):
    """Chinese text with digits, Latin letters and spaces: each character is a word (as in training),
    entities follow the model's BIOES tags, and text[start:end] is every entity's word. The model's
    outputs are set to chosen tags per character, so the test checks the words, windows, decoding
    and offsets, not what one training step learnt."""
    p = pipeline(chinese_ner, max_seq_length=8)  # windows: the text is longer than 6 characters
    assert p.info()["label_scheme"] == "BIOES" and p.config.task_metadata.word_unit == "char"
    text = "2006年 新华社记者在北京说：NBA在上海。"
    wanted = {"新": "B-ORG", "华": "I-ORG", "社": "E-ORG", "北": "B-LOC", "京": "E-LOC", "N": "B-ORG", "B": "I-ORG",
              "A": "E-ORG", "上": "B-LOC", "海": "E-LOC", "2": "S-LOC"}
    label2id = {label: i for i, label in enumerate(p.labels)}
    seen = []

    def outputs(batch, features):
        rows = []
        for feature in features:
            window, words = feature.meta
            seen.append([w for w, _, _ in words])
            logits = np.zeros((len(feature.input_ids), len(label2id)), dtype=np.float32)
            for position, word in enumerate(window.predict_words):
                if word >= 0:
                    logits[position, label2id[wanted.get(text[words[word][1]], "O")]] = 5.0
            rows.append(logits)
        return rows

    monkeypatch.setattr(p, "_outputs", outputs)
    entities = p(text)
    assert seen[0] == [c for c in text if not c.isspace()]  # characters, "2006" and "NBA" included
    assert [(e["entity_group"], e["word"]) for e in entities] == [
        ("LOC", "2"), ("ORG", "新华社"), ("LOC", "北京"), ("ORG", "NBA"), ("LOC", "上海")]
    for entity in entities:
        assert text[entity["start"]:entity["end"]] == entity["word"] and 0 < entity["score"] <= 1


def test_unknown_words_warn_once_naming_the_vocab_and_share(minilm_path, caplog):
    p = pipeline(minilm_path)
    with caplog.at_level("WARNING", logger="bertkit"):
        p(["今天天气很好。", "我明天要去北京开会。"])  # 7 of 17 words are [UNK] in MiniLM's English vocab
        p("今天天气很好。")
    warnings = [r.getMessage() for r in caplog.records if "[UNK]" in r.getMessage()]
    assert len(warnings) == 1
    assert "41% of the words in this input (7 of 17)" in warnings[0] and str(minilm_path / "vocab.txt") in warnings[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="bertkit"):
        pipeline(minilm_path)("The cat sat on the mat.")
    assert not caplog.records
    feature = p.preprocess(("今天天气很好。", None))[0]
    assert p.unknown_tokens(feature) == 4  # what /tokenize reports per feature


def test_truncation_warns_with_the_count(minilm_path, caplog):
    p = pipeline(minilm_path, max_seq_length=8)
    with caplog.at_level("WARNING", logger="bertkit"):
        p(["short", "a much longer sentence that does not fit in eight word pieces at all", "also short"])
    assert "1 of 3 inputs were longer than max_seq_length=8 and were truncated; pass stride=N" in caplog.text


def test_stride_windows_cover_the_text_and_are_pooled(minilm_path):
    p = pipeline(minilm_path, max_seq_length=12)  # windows of 10 word pieces
    text = " ".join(f"word{i}" for i in range(9))
    ids = p.tokenizer.text_to_ids(text)
    assert len(ids) == 18  # "word", "##0", ...: windows start at 0, 6 and 12
    windows = p.preprocess((text, None), stride=4)
    inner = [w.input_ids[1:-1] for w in windows]
    assert all(len(w) <= 10 for w in inner) and inner[0] == ids[:10]
    assert all(a[-4:] == b[:4] for a, b in zip(inner, inner[1:]))  # consecutive windows share 4 pieces
    assert inner[-1][-1] == ids[-1] and not any(w.truncated for w in windows)
    vectors = p.forward(windows)
    expected = np.average(np.stack(vectors), axis=0, weights=[w.num_tokens for w in windows])
    np.testing.assert_allclose(p(text, stride=4, normalize=False), expected, atol=1e-6)
    short = "a short text"
    np.testing.assert_allclose(p(short, stride=4), p(short), atol=1e-6)  # one window: the same vector
    with pytest.raises(ConfigError, match="stride=10"):
        p(text, stride=10)


def test_classification_stride_averages_the_windows_logits(mrpc):
    p = pipeline(mrpc, max_seq_length=16)
    text = "The company said on Monday that its profits rose sharply in the third quarter of the year again."
    windows = p.preprocess((text, None), stride=4)
    assert len(windows) > 1
    logits = np.mean(p.forward(windows), axis=0)
    answer = p(text, stride=4, top_k=None)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([a["score"] for a in sorted(answer, key=lambda a: a["label"])], expected, atol=1e-6)
