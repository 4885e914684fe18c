"""Feature extraction: Google's JSON records, and sentence vectors equal to sentence-transformers'."""

import json

import numpy as np
import pytest
import torch

from bertkit.cli.main import main
from bertkit.errors import ConfigError, DataError
from bertkit.extract_features import FeatureExtractor, InputExample, pool, read_examples
from bertkit.heads import BertModel
from bertkit.tokenization import FullTokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "The new movie is awesome!",
    "Stocks fell sharply on Tuesday after the central bank raised interest rates by half a point.",
    "Él habla español.",
    "short",
    "The quick brown fox jumps over the lazy dog near the riverbank while children watch from the bridge.",
]


def _minilm(minilm_path):
    return BertModel.from_pretrained(minilm_path), FullTokenizer.from_pretrained(minilm_path)


def _reference_vectors(transformers, minilm_path, texts, max_length=128):
    """sentence-transformers' all-MiniLM-L6-v2: mean over attention-masked tokens, then L2 norm."""
    tokenizer = transformers.BertTokenizer.from_pretrained(str(minilm_path))
    model = transformers.BertModel.from_pretrained(str(minilm_path)).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(vectors, dim=-1).numpy()


def _texts(shared_data_dir):
    texts = list(SENTENCES)
    if shared_data_dir is not None:
        with open(shared_data_dir / "glue" / "MRPC" / "dev.tsv", encoding="utf-8-sig") as handle:
            next(handle)
            for line in list(handle)[:150]:
                texts += line.rstrip("\n").split("\t")[3:5]
    return texts


def test_mean_pooled_vectors_equal_sentence_transformers(minilm_path, transformers_module):
    from bertkit.paths import shared_data_dir

    texts = _texts(shared_data_dir())
    model, tokenizer = _minilm(minilm_path)
    ours = FeatureExtractor(model, tokenizer, max_seq_length=128, batch_size=16).sentence_vectors(
        texts, pooling="mean", normalize=True)
    theirs = _reference_vectors(transformers_module, minilm_path, texts)
    cosine = (ours * theirs).sum(axis=1)
    assert cosine.min() >= 0.9999, texts[int(cosine.argmin())]
    # Length-sorted batching must not reorder the output.
    single = FeatureExtractor(model, tokenizer, batch_size=1).sentence_vectors(texts[:5], "mean", True)
    assert np.allclose(single, ours[:5], atol=1e-5)


def test_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(pool(hidden, mask, "max"), torch.tensor([[3.0, 4.0]]))
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))


def test_google_records_for_singles_and_pairs(tmp_path, minilm_path):
    model, tokenizer = _minilm(minilm_path)
    examples = [InputExample(0, "The cat sat."), InputExample(1, "Who sat?", "The cat sat on the mat.")]
    records = list(FeatureExtractor(model, tokenizer).token_features(examples, layers=[-1, -2]))
    assert [r["linex_index"] for r in records] == [0, 1]
    tokens = [f["token"] for f in records[1]["features"]]
    assert tokens == ["[CLS]", "who", "sat", "?", "[SEP]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    layer = records[0]["features"][0]["layers"][0]
    assert layer["index"] == -1 and len(layer["values"]) == 384
    with torch.no_grad():
        top = model(**{k: torch.tensor([v]) for k, v in tokenizer.encode("The cat sat.").items()}).sequence_output
    assert np.allclose(layer["values"], top[0, 0].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="the model has 6 layers"):
        list(FeatureExtractor(model, tokenizer).token_features(examples, layers=[-7]))


def test_cli_writes_jsonl_and_npy(tmp_path, minilm_path, capsys):
    source = tmp_path / "input.txt"
    source.write_text("A man is eating food.\nA man is eating a meal. ||| He eats.\n", encoding="utf-8")
    assert main(["-q", "extract_features", f"--input_file={source}", f"--output_file={tmp_path / 'out.jsonl'}",
                 "--layers=-1"]) == 0
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["features"][0]["token"] == "[CLS]"
    assert main(["-q", "extract_features", f"--input_file={source}", f"--output_file={tmp_path / 'v.npy'}",
                 "--pooling=mean", "--normalize"]) == 0
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (2, 384) and np.allclose((vectors ** 2).sum(1), 1.0, atol=1e-5)
    assert main(["-q", "similarity", "A man is eating food.", "A man is eating a meal.", "The sky is blue."]) == 0
    scores = [float(line.split()[0]) for line in capsys.readouterr().out.strip().splitlines()]
    assert scores[0] > 0.8 > 0.2 > scores[1]


def test_missing_or_empty_input_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nope.txt: file not found"):
        read_examples(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        read_examples(tmp_path / "empty.txt")
