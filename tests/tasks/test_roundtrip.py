"""Every task, end to end: train a few steps with its runner (tiny model), save, pipeline(dir), and
check that what the saved config.json records (its typed TaskMetadata) is what the pipeline uses."""

import json
from pathlib import Path

import pytest

from bertkit.cli.main import main
from bertkit.config import BertConfig
from bertkit.data.ner import NerExample, convert_examples_to_features
from bertkit.inference.pipeline import pipeline
from helpers import TINY_VOCAB, google_tiny_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
TRAIN = ["--do_train", "--max_steps=2", "--train_batch_size=4", "--no_progress"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: every run here on one thread


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "bert_config.json"
    path.write_text(json.dumps(google_tiny_config(vocab_size=128)))
    return path


def saved(out: Path) -> tuple[BertConfig, object]:
    config = BertConfig.from_json_file(out / "config.json")
    p = pipeline(out, device="cpu")
    # What every task records, and what every pipeline reads of it.
    metadata = config.task_metadata
    assert p.metadata == metadata and "finetuning_task" not in config.extra
    assert p.max_seq_length == metadata.max_seq_length
    assert p.tokenizer.do_lower_case == metadata.do_lower_case
    return config, p


def test_text_classification(tmp_path, tiny_config):
    out = tmp_path / "out"
    assert main(["-q", "run_classifier", "--task_name=MRPC", f"--data_dir={ROOT / 'examples' / 'data' / 'mrpc_sample'}",
                 f"--bert_config_file={tiny_config}", f"--vocab_file={TINY_VOCAB}", "--do_lower_case=false",
                 "--max_seq_length=24", f"--output_dir={out}", "--cache_dir=none", *TRAIN]) == 0
    config, p = saved(out)
    assert p.task == "text-classification" and config.task_metadata.finetuning_task == "mrpc"
    assert config.task_metadata.do_lower_case is False and p.tokenizer.do_lower_case is False
    assert config.task_metadata.problem_type == "single_label_classification" == p.problem_type
    assert p("a man is playing", "a man plays")[0]["label"] in ("0", "1")


def test_token_classification_uses_the_recorded_doc_stride(tmp_path, tiny_config):
    out = tmp_path / "out"
    assert main(["-q", "run_ner", f"--data_dir={FIXTURES / 'ner'}", f"--bert_config_file={tiny_config}",
                 f"--vocab_file={TINY_VOCAB}", "--max_seq_length=8", "--doc_stride=3", f"--output_dir={out}",
                 *TRAIN]) == 0
    config, p = saved(out)
    assert (config.task_metadata.label_scheme, config.task_metadata.doc_stride) == ("IOB2", 3)
    assert p.task == "token-classification" and p.options["doc_stride"] == 3
    text = "the cat sat on the mat with the dog and the other cat"
    windows = p.preprocess(text, **p.options)
    words = [w for w, _, _ in p.tokenizer.words_with_offsets(text)]
    expected = convert_examples_to_features([NerExample("predict", words)], None, 8, p.tokenizer, 3)
    assert len(windows) > 1 and [w.input_ids for w in windows] == [f.input_ids for f in expected]


def test_question_answering_uses_the_recorded_windows(tmp_path, tiny_config):
    out = tmp_path / "out"
    squad = FIXTURES / "squad"
    assert main(["-q", "run_squad", f"--train_file={squad / 'tiny-v1.1.json'}", "--max_seq_length=32",
                 "--doc_stride=8", "--max_query_length=12", f"--bert_config_file={tiny_config}",
                 f"--vocab_file={squad / 'vocab.txt'}", f"--output_dir={out}", *TRAIN]) == 0
    config, p = saved(out)
    assert (config.task_metadata.doc_stride, config.task_metadata.max_query_length) == (8, 12)
    assert p.task == "question-answering" and (p.options["doc_stride"], p.options["max_query_length"]) == (8, 12)
    assert set(p(question="who?", context="the cat sat on the mat")) == {"answer", "start", "end", "score"}


def test_multiple_choice(tmp_path, tiny_config):
    out = tmp_path / "out"
    assert main(["-q", "run_multiple_choice", "--task=swag", f"--data_dir={FIXTURES / 'multiple_choice' / 'swag'}",
                 f"--bert_config_file={tiny_config}", f"--vocab_file={TINY_VOCAB}", "--max_seq_length=24",
                 f"--output_dir={out}", *TRAIN]) == 0
    config, p = saved(out)
    assert p.task == "multiple-choice" and config.task_metadata.finetuning_task == "swag"
    assert p(question="where?", choices=["here", "there"])["choice"] in (0, 1)


def test_fill_mask_after_pretraining(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join("one two three four five six seven\nred blue green big small\n\n" for _ in range(6)))
    vocab = FIXTURES / "tf" / "bert_tiny_pretraining" / "vocab.txt"
    assert main(["-q", "create_pretraining_data", f"--input_file={corpus}", f"--output_dir={tmp_path / 'data'}",
                 f"--vocab_file={vocab}", "--max_seq_length=32", "--dupe_factor=1"]) == 0
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(google_tiny_config(max_position_embeddings=64)))
    out = tmp_path / "out"
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'data'}", f"--bert_config_file={config}",
                 "--max_seq_length=32", f"--output_dir={out}", "--do_train", "--num_train_steps=2",
                 "--train_batch_size=4", "--no_progress"]) == 0
    saved_config, p = saved(out)
    assert p.task == "fill-mask" and saved_config.task_metadata.finetuning_task == "pretraining"
    assert len(p("one two [MASK] four")) == 5


def test_feature_extraction_saved_by_its_pipeline(tmp_path, minilm_path):
    """No runner trains a sentence encoder: its round trip is Pipeline.save_pretrained -> pipeline(dir)."""
    p = pipeline(minilm_path, device="cpu", max_seq_length=64)
    p.save_pretrained(tmp_path / "saved")
    config, q = saved(tmp_path / "saved")
    assert q.task == "feature-extraction" and q.embeddings and config.task_metadata.max_seq_length == 64
    assert q.options == p.options  # pooling and normalisation from the copied sentence-transformers files
    assert q("a cat sat on the mat") == pytest.approx(p("a cat sat on the mat"), abs=1e-6)
