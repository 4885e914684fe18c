"""int8 quantization: the layers' arithmetic, save/load round trips, the CLI, and fidelity on real sentences."""

import copy

import pytest
import torch

from bertkit import heads, quantize
from bertkit.cli.main import main
from bertkit.int8 import WEIGHT_LEVELS, Int8Linear, Int8SelfAttention
from bertkit.errors import ConfigError
from bertkit.extract_features import FeatureExtractor
from bertkit.heads import BertModel
from bertkit.tokenization import FullTokenizer
from helpers import random_batch, tiny_config


def test_int8_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    x = torch.randn(20, 64)
    q = Int8Linear.from_float(linear.weight, linear.bias)
    assert q.weight.dtype == torch.int8 and q.weight_scale.shape == (48,)
    # Per-row scales: each row's largest weight is exactly +-WEIGHT_LEVELS.
    assert torch.all(q.weight.abs().amax(dim=1) == WEIGHT_LEVELS)
    assert (q.dequantized_weight() - linear.weight).abs().max() <= q.weight_scale.max() / 2 + 1e-7
    with torch.no_grad():
        error = (q(x) - linear(x)).norm() / linear(x).norm()
    assert error < 0.03  # inputs of both signs, weights near their row's peak: the saturation-prone case
    # Changing the state in place (as loading does) re-packs the kernel's weight.
    with torch.no_grad():
        q.weight.neg_()
        assert (q(x) + linear(x) - 2 * linear.bias).norm() / linear(x).norm() < 0.03


@pytest.mark.parametrize("name", ["BertModel", "BertForSequenceClassification", "BertForTokenClassification",
                                  "BertForQuestionAnswering"])
def test_quantized_models_save_load_and_stay_close(tmp_path, name):
    torch.manual_seed(0)
    cls = BertModel if name == "BertModel" else getattr(heads, name)
    fp32 = cls(tiny_config(hidden_size=64, intermediate_size=128, num_labels=2)).eval()
    int8 = quantize(copy.deepcopy(fp32))
    layer = (int8 if name == "BertModel" else int8.bert).encoder.layer[0]
    assert isinstance(layer.attention.self, Int8SelfAttention)
    assert all(isinstance(m, Int8Linear) for m in (layer.attention.self.qkv, layer.attention.output.dense,
                                                   layer.intermediate.dense, layer.output.dense))
    batch = random_batch(fp32.config)
    with torch.no_grad():
        a, b = fp32(**batch), int8(**batch)
    first = (lambda out: out.pooled_output) if name == "BertModel" else (
        lambda out: out.start_logits if name == "BertForQuestionAnswering" else out.logits)
    assert (first(a) - first(b)).abs().max() < 0.05 * first(a).abs().max()

    int8.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert not loaded.load_report.missing and not loaded.load_report.unexpected
    assert loaded.config.quantization_config.method == "dynamic-int8"
    with torch.no_grad():
        assert torch.equal(first(loaded(**batch)), first(b))


def test_keep_fp32_leaves_those_projections_alone(tmp_path):
    torch.manual_seed(0)
    model = quantize(BertModel(tiny_config()), keep_fp32=["output", "qkv"])
    layer = model.encoder.layer[1]
    assert type(layer.output.dense) is torch.nn.Linear and type(layer.attention.self.query) is torch.nn.Linear
    assert isinstance(layer.intermediate.dense, Int8Linear)
    model.save_pretrained(tmp_path)
    loaded = BertModel.from_pretrained(tmp_path)
    assert type(loaded.encoder.layer[1].output.dense) is torch.nn.Linear
    assert not loaded.load_report.missing and not loaded.load_report.unexpected


def test_bad_requests_are_clear_errors():
    model = BertModel(tiny_config())
    with pytest.raises(ConfigError, match="unknown projection"):
        quantize(model, keep_fp32=["ffn"])
    quantize(model)
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(model)
    with pytest.raises(ConfigError, match="bertkit model"):
        quantize(torch.nn.Linear(2, 2))


def test_quantize_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    source = tmp_path / "fp32"
    BertForSeq = heads.BertForSequenceClassification
    BertForSeq(tiny_config(num_labels=3)).save_pretrained(source)
    (source / "vocab.txt").write_text("[PAD]\n[UNK]\n", encoding="utf-8")
    assert main(["quantize", "--model", str(source), "--output_dir", str(tmp_path / "int8")]) == 0
    assert (tmp_path / "int8" / "vocab.txt").is_file()
    loaded = BertForSeq.from_pretrained(tmp_path / "int8")
    assert isinstance(loaded.bert.encoder.layer[0].intermediate.dense, Int8Linear)
    assert main(["quantize", "--model", str(source), "--output_dir", str(tmp_path / "x"), "--keep_fp32", "ffn"]) == 2
    assert "unknown projection" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def mrpc_sentences(shared_data, count: int = 64) -> list[str]:
    with open(shared_data / "glue" / "MRPC" / "dev.tsv", encoding="utf-8-sig") as handle:
        next(handle)
        texts = [text for line in handle for text in line.rstrip("\n").split("\t")[3:5]]
    return texts[:count]


@pytest.mark.slow
def test_int8_minilm_sentence_vectors_keep_their_direction(minilm_path, shared_data, tmp_path):
    """The fidelity goal: mean cosine >= 0.99 and none below 0.98 between int8 and fp32 mean-pooled
    MiniLM vectors of 64 MRPC dev sentences, in batches of 32 padded to the longest as users run them.
    (torch's quantize_dynamic on the same model gives 0.94; see README's int8 section.)"""
    texts = mrpc_sentences(shared_data)
    tokenizer = FullTokenizer.from_pretrained(minilm_path)
    fp32 = BertModel.from_pretrained(minilm_path)
    quantize(copy.deepcopy(fp32)).save_pretrained(tmp_path)  # through a saved checkpoint, as users load it
    int8 = BertModel.from_pretrained(tmp_path)
    vectors = [FeatureExtractor(m, tokenizer, batch_size=32).sentence_vectors(texts, "mean", normalize=True)
               for m in (fp32, int8)]
    cosine = (vectors[0] * vectors[1]).sum(axis=1)
    assert cosine.mean() >= 0.99, cosine.mean()
    assert cosine.min() >= 0.98, texts[int(cosine.argmin())]
