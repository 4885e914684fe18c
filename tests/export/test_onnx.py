"""ONNX export: every head, run by ONNX Runtime, against bertkit's PyTorch forward on padded batches."""

import pytest
import torch

from bertkit import heads
from bertkit.cli.main import main
from bertkit.errors import CheckpointError, ConfigError
from bertkit.heads import MODEL_CLASSES, BertModel
from helpers import random_batch, tiny_config

pytest.importorskip("onnx", reason="ONNX export needs: pip install 'bertkit[onnx]'")
pytest.importorskip("onnxruntime", reason="the ONNX backend needs: pip install 'bertkit[onnx]'")

from bertkit.export.onnx import OnnxModel, export_onnx  # noqa: E402

SHAPES = [(3, 11), (5, 17), (1, 6), (2, 40)]


def build(name: str):
    torch.manual_seed(0)
    cls = BertModel if name == "BertModel" else getattr(heads, name)
    return cls(tiny_config(num_labels=2 if name == "BertForQuestionAnswering" else 3)).eval()


def batch_for(name: str, config, batch: int, length: int) -> dict:
    if name == "BertForMultipleChoice":
        flat = random_batch(config, batch=batch * 2, length=length, seed=batch)
        return {k: v.view(batch, 2, length) for k, v in flat.items()}
    return random_batch(config, batch=batch, length=length, seed=batch)


def outputs(out) -> list[torch.Tensor]:
    if hasattr(out, "start_logits"):
        return [out.start_logits, out.end_logits]
    if hasattr(out, "prediction_logits"):
        return [out.prediction_logits, out.seq_relationship_logits]
    if hasattr(out, "sequence_output"):
        return [out.sequence_output, out.pooled_output]
    return [out.logits]


def at_real_tokens(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x[mask.bool()] if x.dim() >= mask.dim() and x.shape[:mask.dim()] == mask.shape else x


@pytest.mark.parametrize("unpad", [False, True])
@pytest.mark.parametrize("name", list(MODEL_CLASSES))
def test_every_head_matches_pytorch_on_padded_batches(tmp_path, name, unpad):
    model = build(name)
    path = export_onnx(model, tmp_path / "model.onnx", unpad=unpad)
    onnx_model = OnnxModel(path)
    assert onnx_model.model_class == name and onnx_model.config.to_dict() == model.config.to_dict()
    assert [o.name for o in onnx_model.session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in onnx_model.session.get_outputs()] == list(MODEL_CLASSES[name].output_names)
    for shape in SHAPES:
        batch = batch_for(name, model.config, *shape)
        with torch.no_grad():
            expected = outputs(model(**batch))
        got = outputs(onnx_model(**batch))
        assert type(onnx_model(**batch)) is type(model(**batch))
        for a, b in zip(expected, got, strict=True):
            assert a.shape == b.shape
            assert (at_real_tokens(a, batch["attention_mask"]) - at_real_tokens(b, batch["attention_mask"])
                    ).abs().max() <= 1e-4, shape


def test_int8_export_stays_within_its_tolerance(tmp_path):
    """int8 MatMuls (ONNX Runtime's dynamic quantization, per channel). Documented tolerance: every
    real token's top-layer vector within cosine 0.999 and 0.05 absolute of the fp32 one on this
    tiny random model (MiniLM's mean-pooled sentence vectors: cosine 0.99, bench/bench_inference.py)."""
    model = build("BertModel")
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "int8.onnx", int8=True))
    assert onnx_model.int8
    batch = batch_for("BertModel", model.config, 5, 17)
    keep = batch["attention_mask"].bool()
    with torch.no_grad():
        expected = model(**batch).sequence_output[keep]
    got = onnx_model(**batch).sequence_output[keep]
    assert (expected - got).abs().max() <= 0.05
    assert torch.nn.functional.cosine_similarity(expected, got).min() >= 0.999
    assert not torch.equal(expected, got)  # it did quantize


def test_missing_inputs_default_as_in_the_torch_model(tmp_path):
    model = build("BertModel")
    onnx_model = OnnxModel(export_onnx(model, tmp_path / "m.onnx"))
    ids = torch.randint(1, 99, (2, 9))
    with torch.no_grad():
        expected = model(ids).sequence_output
    assert (onnx_model(ids).sequence_output - expected).abs().max() <= 1e-4
    with pytest.raises(TypeError, match="the ONNX backend takes input_ids, attention_mask, token_type_ids"):
        onnx_model(ids, output_hidden_states=True)


def test_export_command_and_its_errors(tmp_path, capsys):
    source = tmp_path / "ckpt"
    build("BertForTokenClassification").save_pretrained(source)
    assert main(["export", "--model", str(source), "--output", str(tmp_path / "ner.onnx")]) == 0
    assert OnnxModel(tmp_path / "ner.onnx").model_class == "BertForTokenClassification"
    assert main(["export", "--model", str(source), "--output", str(tmp_path / "ner.txt")]) == 2
    assert "ending in .onnx" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="not found"):
        OnnxModel(tmp_path / "absent.onnx")


def test_a_bertkit_int8_model_is_refused_with_a_pointer(tmp_path):
    from bertkit.int8 import quantize

    with pytest.raises(ConfigError, match="--int8"):
        export_onnx(quantize(build("BertModel")), tmp_path / "x.onnx")
