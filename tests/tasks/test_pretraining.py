"""run_pretraining: Google's metrics, learning on a tiny corpus, save/load, longer positions, the CLI end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bertkit.cli.common import ModelSource, load_training_model
from bertkit.cli.main import build_parser, main
from bertkit.config import BertConfig
from bertkit.data.batching import PaddingCollator
from bertkit.data.pretraining import PretrainingDataConfig, PretrainingDataset, create_pretraining_data
from bertkit.errors import ConfigError
from bertkit.heads import BertForPreTraining
from bertkit.tasks.base import run_task
from bertkit.tasks.pretraining import PretrainingTask, pretraining_metrics
from bertkit.tokenization import FullTokenizer
from bertkit.training.trainer import TrainingArguments

ROOT = Path(__file__).resolve().parents[2]
GOOGLE = ROOT / "tests" / "fixtures" / "tf" / "bert_tiny_pretraining"
VOCAB = GOOGLE / "vocab.txt"
TINY = {"attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 32,
        "initializer_range": 0.02, "intermediate_size": 64, "max_position_embeddings": 64,
        "num_attention_heads": 2, "num_hidden_layers": 2, "type_vocab_size": 2, "vocab_size": 99}
# Topics with a fixed word order, so that a masked word can be told from its neighbours.
TOPICS = ["one two three four five six seven eight nine ten", "red blue green big small new old good bad",
          "cat dog house car tree book water fire day night", "run walk talk sit eat sleep read write play"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: every run here on one thread


@pytest.fixture(scope="module")
def tokenizer():
    return FullTokenizer(VOCAB)


def write_corpus(path: Path, documents: int, sentences=(4, 12), seed: int = 0) -> Path:
    """Each document keeps to one topic: its sentences are windows of the topic's word sequence."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for d in range(documents):
            words = TOPICS[d % len(TOPICS)].split()
            for _ in range(rng.randint(*sentences)):
                start = rng.randrange(len(words) - 2)
                handle.write(" ".join(words[start:rng.randint(start + 2, len(words))]) + "\n")
            handle.write("\n")
    return path


def make_shards(tmp_path: Path, tokenizer, name: str, documents: int = 40, sentences=(4, 12), **settings) -> Path:
    corpus = write_corpus(tmp_path / f"{name}.txt", documents, sentences)
    config = PretrainingDataConfig(**{"max_seq_length": 32, "dupe_factor": 2, **settings})
    create_pretraining_data(str(corpus), tmp_path / name, tokenizer, config)
    return tmp_path / name


def training_args(output_dir, **overrides) -> TrainingArguments:
    values = dict(output_dir=str(output_dir), learning_rate=2e-3, train_batch_size=16, eval_batch_size=16,
                  warmup_proportion=0.0, save_checkpoints_steps=None, progress=False, tensorboard=False, plot=False,
                  logging_steps=10)
    return TrainingArguments(**{**values, **overrides})


def results_file(path: Path) -> dict[str, str]:
    return dict(line.split(" = ") for line in path.read_text().splitlines())


def test_metrics_by_hand():
    labels = np.array([[5, 7, -100], [9, -100, -100]])
    predicted = np.array([[5, 1, -100], [9, 0, -100]])
    positions = np.array([[3, 600, 0], [520, 0, 0]])
    row_losses = np.array([4.0, 2.0], dtype=np.float32)  # per instance, summed over its masked positions
    nsp_logits = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    nsp_labels = np.array([0, 0])
    shown = np.zeros_like(labels)
    metrics = pretraining_metrics((predicted, row_losses, nsp_logits, positions, shown), (labels, nsp_labels))
    assert metrics["masked_lm_accuracy"] == pytest.approx(2 / 3)
    assert metrics["masked_lm_loss"] == pytest.approx(2.0)
    assert metrics["next_sentence_accuracy"] == 0.5
    expected_nsp = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(1.0))) / 2
    assert metrics["next_sentence_loss"] == pytest.approx(expected_nsp)
    assert metrics["masked_lm_accuracy_beyond_512"] == pytest.approx(1 / 2)  # 600 wrong, 520 right
    assert "masked_lm_accuracy_beyond_512" not in pretraining_metrics(
        (predicted, row_losses, nsp_logits, np.minimum(positions, 511), shown), (labels, nsp_labels))
    assert "masked_lm_accuracy_at_mask" not in metrics  # no [MASK] id given


def test_accuracy_by_what_the_masked_position_showed():
    mask = 4
    labels = np.array([[5, 7, 8, -100], [9, 6, -100, -100]])
    predicted = np.array([[5, 1, 8, 0], [9, 6, 0, 0]])
    positions = np.array([[1, 2, 3, 0], [1, 2, -100, -100]])  # -100: a batch with fewer positions, gathered
    # shown at the positions: row 0 [MASK], [MASK], 8 (kept); row 1 9 (kept), 3 (random); -100: ragged padding
    shown = np.array([[mask, mask, 8, 2], [9, 3, -100, -100]])
    rest = (np.zeros(2, dtype=np.float32), np.zeros((2, 2), dtype=np.float32))
    metrics = pretraining_metrics((predicted, *rest, positions, shown), (labels, np.array([0, 1])),
                                  mask_token_id=mask)
    assert metrics["masked_lm_accuracy"] == pytest.approx(4 / 5)
    assert metrics["masked_lm_accuracy_at_mask"] == pytest.approx(1 / 2)
    assert metrics["masked_lm_accuracy_at_kept"] == 1.0 and metrics["masked_lm_accuracy_at_random"] == 1.0


def test_eval_metrics_are_googles_over_all_masked_positions(tokenizer, tmp_path):
    shards = make_shards(tmp_path, tokenizer, "data", documents=12)
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**TINY))
    task = PretrainingTask(input_file=str(shards), do_eval=True, max_seq_length=32, max_eval_steps=3)
    # eval_batch_size 7 leaves a short last batch: the per-position mean must still be exact.
    results = run_task(task, model, tokenizer, training_args(tmp_path / "out", eval_batch_size=7))
    data = PretrainingDataset(shards, limit=21)
    batch = PaddingCollator()([data[i] for i in range(len(data))])
    model.eval()
    with torch.no_grad():
        output = model(**batch)
    labels = batch["labels"]
    logits = output.prediction_logits
    real = labels != -100
    assert results["eval_masked_lm_loss"] == pytest.approx(float(F.cross_entropy(logits[real], labels[real])), rel=1e-5)
    assert results["eval_masked_lm_accuracy"] == pytest.approx(float((logits.argmax(-1) == labels)[real].float().mean()))
    shown = batch["input_ids"].gather(1, batch["masked_lm_positions"])
    for name, where in (("mask", shown == tokenizer.vocab["[MASK]"]), ("kept", shown == labels)):
        where &= real
        assert results[f"eval_masked_lm_accuracy_at_{name}"] == pytest.approx(
            float((logits.argmax(-1) == labels)[where].float().mean()))
    nsp = output.seq_relationship_logits
    assert results["eval_next_sentence_loss"] == pytest.approx(float(F.cross_entropy(nsp, batch["next_sentence_label"])),
                                                              rel=1e-5)
    assert results["eval_next_sentence_accuracy"] == pytest.approx(
        float((nsp.argmax(-1) == batch["next_sentence_label"]).float().mean()))
    written = results_file(tmp_path / "out" / "eval_results.txt")
    assert {"eval_masked_lm_accuracy", "eval_masked_lm_loss", "eval_next_sentence_accuracy",
            "eval_next_sentence_loss", "loss", "global_step"} <= set(written)


def test_loss_goes_down_and_the_saved_model_keeps_its_tied_weights(tokenizer, tmp_path):
    shards = make_shards(tmp_path, tokenizer, "data", documents=40)
    torch.manual_seed(0)
    model = BertForPreTraining(BertConfig(**TINY))
    task = PretrainingTask(input_file=str(shards), do_eval=True, max_seq_length=32, max_eval_steps=4)
    before = run_task(task, model, tokenizer, training_args(tmp_path / "before"))
    task.do_train = True
    out = tmp_path / "out"
    after = run_task(task, model, tokenizer, training_args(out, max_steps=60, learning_rate=3e-3))
    assert after["global_step"] == 60
    assert after["eval_masked_lm_loss"] < before["eval_masked_lm_loss"] - 1.0
    assert after["eval_loss"] < before["eval_loss"] - 1.0
    assert after["eval_masked_lm_accuracy"] > before["eval_masked_lm_accuracy"] + 0.05
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "train"]
    assert losses[-1] < losses[0]

    loaded = BertForPreTraining.from_pretrained(out)
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    assert not loaded.load_report.missing and not loaded.load_report.unexpected
    torch.testing.assert_close(loaded.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)
    batch = PaddingCollator()([PretrainingDataset(shards)[i] for i in range(4)])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).prediction_logits, model(**batch).prediction_logits)
    with torch.no_grad():  # still tied after training continues
        loaded.bert.embeddings.word_embeddings.weight[7] += 1.0
    assert torch.equal(loaded.cls.predictions.decoder.weight[7], loaded.bert.embeddings.word_embeddings.weight[7])


def test_positions_past_512_keep_the_trained_rows_and_are_measured(tokenizer, tmp_path):
    torch.manual_seed(0)
    base = BertForPreTraining(BertConfig(**{**TINY, "max_position_embeddings": 512}))
    base.save_pretrained(tmp_path / "base", tokenizer=tokenizer)
    shards = make_shards(tmp_path, tokenizer, "long", documents=6, sentences=(120, 140), max_seq_length=640,
                         max_predictions_per_seq=100, dupe_factor=1, short_seq_prob=0.0)
    args = build_parser("run_pretraining").parse_args(["run_pretraining", f"--init_checkpoint={tmp_path / 'base'}",
                                                       "--max_position_embeddings=640",
                                                       f"--output_dir={tmp_path / 'out'}"])
    model = load_training_model(args, ModelSource.from_args(args), BertForPreTraining)
    table = model.bert.embeddings.position_embeddings.weight
    assert table.shape == (640, 32) and model.config.max_position_embeddings == 640
    assert torch.equal(table[:512], base.bert.embeddings.position_embeddings.weight)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight

    task = PretrainingTask(input_file=str(shards), do_train=True, do_eval=True, max_seq_length=640,
                           max_predictions_per_seq=100, max_eval_steps=2)
    results = run_task(task, model, tokenizer, training_args(tmp_path / "out", max_steps=2, train_batch_size=4,
                                                                     eval_batch_size=4))
    assert 0.0 <= results["eval_masked_lm_accuracy_beyond_512"] <= 1.0
    assert "eval_masked_lm_accuracy_beyond_512" in json.loads(
        (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[-1])
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["max_position_embeddings"] == 640

    # Without the flag the data does not fit the 512 positions: the error says which flag to pass.
    short = BertForPreTraining.from_pretrained(tmp_path / "base")
    with pytest.raises(ConfigError, match="--max_position_embeddings=640"):
        run_task(task, short, tokenizer, training_args(tmp_path / "x", max_steps=1))


def test_cli_two_phases(tokenizer, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt", 30)
    config = tmp_path / "bert_config.json"
    config.write_text(json.dumps(TINY))
    for length in (32, 64):
        assert main(["-q", "create_pretraining_data", f"--input_file={corpus}", f"--output_dir={tmp_path / f'd{length}'}",
                     f"--vocab_file={VOCAB}", f"--max_seq_length={length}", "--dupe_factor=2"]) == 0
    capsys.readouterr()
    common = ["--do_train=true", "--do_eval=true", "--train_batch_size=8", "--eval_batch_size=8", "--max_eval_steps=2",
              "--learning_rate=1e-3", "--no_progress", "--save_checkpoints_steps=2"]
    phase1 = tmp_path / "phase1"
    # From scratch: the vocabulary is the data's.
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd32'}", f"--output_dir={phase1}",
                 f"--bert_config_file={config}", "--max_seq_length=32", "--num_train_steps=4",
                 "--num_warmup_steps=1", *common]) == 0
    printed = dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())
    assert {"masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy", "next_sentence_loss", "loss",
            "global_step"} <= set(printed) and printed["global_step"] == "4"
    assert (phase1 / "checkpoint-4" / "trainer_state.json").is_file() and (phase1 / "vocab.txt").is_file()
    assert results_file(phase1 / "eval_results.txt")["global_step"] == "4"

    phase2 = tmp_path / "phase2"
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd64'}", f"--output_dir={phase2}",
                 f"--init_checkpoint={phase1}", "--max_seq_length=64", "--num_train_steps=2", *common]) == 0
    printed = dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())
    assert printed["global_step"] == "2" and float(printed["masked_lm_loss"]) > 0

    # Resuming phase 2 after its last checkpoint trains nothing more and gives the same model.
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd64'}", f"--output_dir={phase2}",
                 f"--init_checkpoint={phase1}", "--max_seq_length=64", "--num_train_steps=2", "--resume", *common]) == 0
    assert dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())["global_step"] == "2"

    # --next_sentence_weight=0: the masked LM alone trains; the NSP classifier and the pooler are
    # left exactly as they were (not even weight decay touches them), but NSP is still evaluated.
    mlm_only = tmp_path / "mlm_only"
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd32'}", f"--output_dir={mlm_only}",
                 f"--init_checkpoint={phase1}", "--max_seq_length=32", "--num_train_steps=2",
                 "--next_sentence_weight=0", *common]) == 0
    assert "next_sentence_accuracy" in capsys.readouterr().out
    before = BertForPreTraining.from_pretrained(phase1).state_dict()
    after = BertForPreTraining.from_pretrained(mlm_only).state_dict()
    for name in ("cls.seq_relationship.weight", "bert.pooler.dense.weight"):
        assert torch.equal(before[name], after[name])
    assert not torch.equal(before["cls.predictions.transform.dense.weight"],
                           after["cls.predictions.transform.dense.weight"])
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd32'}", f"--output_dir={tmp_path / 'x'}",
                 f"--init_checkpoint={phase1}", "--next_sentence_weight=-1", *common]) == 2
    assert "--next_sentence_weight must be 0 or more" in capsys.readouterr().err

    # Flags that do not fit the data fail before anything is trained, with the fix in the message.
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd64'}", f"--output_dir={tmp_path / 'x'}",
                 f"--init_checkpoint={phase1}", "--max_seq_length=32", *common]) == 2
    assert "pass --max_seq_length=64" in capsys.readouterr().err
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'd32'}", f"--output_dir={tmp_path / 'x'}",
                 f"--bert_config_file={config}", "--num_train_steps=3", "--max_steps=4", *common]) == 2
    assert "mean the same thing" in capsys.readouterr().err
    assert main(["-q", "run_pretraining", f"--input_file={tmp_path / 'nope'}", f"--output_dir={tmp_path / 'x'}",
                 f"--bert_config_file={config}", *common]) == 2
    assert f"{tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_continue_from_a_google_checkpoint(tokenizer, tmp_path, capsys):
    shards = make_shards(tmp_path, tokenizer, "data", documents=12)
    assert main(["-q", "run_pretraining", f"--input_file={shards}", f"--output_dir={tmp_path / 'out'}",
                 f"--init_checkpoint={GOOGLE / 'bert_model.ckpt'}", "--do_eval=true", "--max_seq_length=32",
                 "--max_eval_steps=2", "--no_progress"]) == 0
    printed = dict(line.split(" = ") for line in capsys.readouterr().out.splitlines())
    google = BertForPreTraining.from_pretrained(GOOGLE / "bert_model.ckpt")
    data = PretrainingDataset(shards, limit=16)
    batch = PaddingCollator()([data[i] for i in range(len(data))])
    google.eval()
    with torch.no_grad():
        output = google(**batch)
    real = batch["labels"] != -100
    accuracy = (output.prediction_logits.argmax(-1) == batch["labels"])[real].float().mean()
    assert float(printed["masked_lm_accuracy"]) == pytest.approx(float(accuracy))
    assert float(printed["masked_lm_loss"]) == pytest.approx(float(output.masked_lm_loss), rel=1e-5)

    # A vocabulary other than the data's is refused.
    other = tmp_path / "vocab.txt"
    other.write_text(VOCAB.read_text().replace("\ncat\n", "\nkitten\n"))
    with pytest.raises(ConfigError, match="pass the --vocab_file the data was built with"):
        run_task(PretrainingTask(input_file=str(shards), do_eval=True, max_seq_length=32), google,
                 FullTokenizer(other), training_args(tmp_path / "y"))
