import json

from pathlib import Path

from bertkit.checkpoint.inspect import format_inspection, inspect_checkpoint, parameter_counts

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"


def test_google_table_lists_every_variable_and_why_some_are_not_loaded():
    files, rows = inspect_checkpoint(FIXTURES / "bert_tiny_adam")
    variables = json.loads((FIXTURES / "bert_tiny_adam" / "variables.json").read_text())["variables"]
    assert sorted(r.name for r in rows) == sorted(v[0] for v in variables)
    by_name = {r.name: r for r in rows}
    assert by_name["bert/pooler/dense/kernel"].maps_to == "bert.pooler.dense.weight"
    assert by_name["bert/pooler/dense/kernel"].note == "transposed"
    assert by_name["global_step"].maps_to is None and by_name["global_step"].note == "training bookkeeping"
    assert by_name["bert/pooler/dense/kernel/adam_m"].note == "optimizer slot"
    text = format_inspection(files, rows)
    assert "optimizer slot" in text and "total" in text


def test_bert_tiny_mrpc_parameter_count_matches_the_articles():
    """BERT-Tiny (L=2, H=128, A=2, vocab 30522) with the MRPC classifier: 4,386,178 parameters."""
    from bertkit.checkpoint.inspect import VariableRow
    from bertkit.checkpoint.names import google_to_hf

    shapes = {"bert/embeddings/word_embeddings": (30522, 128), "bert/embeddings/position_embeddings": (512, 128),
              "bert/embeddings/token_type_embeddings": (2, 128), "bert/embeddings/LayerNorm/gamma": (128,),
              "bert/embeddings/LayerNorm/beta": (128,), "bert/pooler/dense/kernel": (128, 128),
              "bert/pooler/dense/bias": (128,), "output_weights": (2, 128), "output_bias": (2,)}
    for i in range(2):
        for part, shape in [("attention/self/query", (128, 128)), ("attention/self/key", (128, 128)),
                            ("attention/self/value", (128, 128)), ("attention/output/dense", (128, 128)),
                            ("intermediate/dense", (128, 512)), ("output/dense", (512, 128))]:
            shapes[f"bert/encoder/layer_{i}/{part}/kernel"] = shape
            shapes[f"bert/encoder/layer_{i}/{part}/bias"] = (shape[1],)
        for part in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"bert/encoder/layer_{i}/{part}/gamma"] = (128,)
            shapes[f"bert/encoder/layer_{i}/{part}/beta"] = (128,)
    rows = [VariableRow(n, s, "float32", google_to_hf(n)[0]) for n, s in shapes.items()]
    counts = parameter_counts(rows)
    assert sum(counts.values()) == 4_386_178
    assert counts["embeddings.word_embeddings"] / 4_386_178 == __import__("pytest").approx(0.8907, abs=1e-4)


def test_hf_checkpoint_rows(minilm_path):
    files, rows = inspect_checkpoint(minilm_path)
    assert files.format == "safetensors"
    by_name = {r.name: r for r in rows}
    assert by_name["embeddings.position_ids"].maps_to is None
    assert by_name["encoder.layer.0.attention.self.query.weight"].shape == (384, 384)
    assert sum(parameter_counts(rows).values()) == 22_713_216
