"""Precision per CPU: the dispatch with mocked CPU flags (AMX, AVX-512 VNNI, AVX2, plain), the
conversions, and the fidelity gates on real MRPC sentences for every path this machine runs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from bertkit.compress.quantize import Int8Linear, quantize
from bertkit.cpu import CpuInfo, cpu_info, read_cpu_info
from bertkit.errors import ConfigError
from bertkit.heads import BertForSequenceClassification, BertModel
from bertkit.inference import precision
from bertkit.inference.precision import (GATES, PrecisionChoice, apply_precision, check_fidelity, choose_precision,
                                         label_flips, sentence_vectors)
from bertkit.tokenization import FullTokenizer
from helpers import random_batch, tiny_config

# /proc/cpuinfo flag sets of the CPU kinds users deploy on (abridged to what matters).
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"}
CASCADE_LAKE = {"avx2", "avx512f", "avx512_vnni"}
ZEN4 = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
EPYC_AVX2 = {"avx2", "fma"}
ALDER_LAKE = {"avx2", "avx_vnni"}
PLAIN = {"sse4_2"}


def test_auto_picks_by_instruction_set():
    amx = choose_precision("auto", "cpu", SAPPHIRE_RAPIDS, failed=set())
    assert (amx.dtype, amx.int8_weight_bits) == ("bf16", None) and "amx_bf16" in amx.reason
    for flags in (CASCADE_LAKE, ZEN4):  # avx512_bf16 without AMX: not measured fastest, VNNI int8
        vnni = choose_precision("auto", "cpu", flags, failed=set())
        assert (vnni.dtype, vnni.int8_weight_bits) == ("int8", 8) and "avx512_vnni" in vnni.reason
    for flags in (EPYC_AVX2, ALDER_LAKE):  # fbgemm does not use AVX-VNNI: its int16 sums need 7-bit weights
        avx2 = choose_precision("auto", "cpu", flags, failed=set())
        assert (avx2.dtype, avx2.int8_weight_bits) == ("int8", 7) and "7-bit" in avx2.reason
    plain = choose_precision(None, "cpu", PLAIN, failed=set())
    assert plain.dtype == "fp32" and plain.requested == "auto"


def test_auto_skips_a_path_that_failed_its_gate():
    choice = choose_precision("auto", "cpu", SAPPHIRE_RAPIDS, failed={"bf16"})
    assert (choice.dtype, choice.int8_weight_bits) == ("int8", 8) and "bf16 failed" in choice.reason
    choice = choose_precision("auto", "cpu", EPYC_AVX2, failed={"int8-w7"})
    assert choice.dtype == "fp32" and "int8-w7 failed" in choice.reason
    # An explicit request is the user's: gates do not override it.
    assert choose_precision("int8", "cpu", EPYC_AVX2, failed={"int8-w7"}).dtype == "int8"


def test_label_outputs_use_the_label_flip_measurement(monkeypatch):
    monkeypatch.setattr(precision, "LABEL_FLIPS", {"bf16": 0.0, "int8-w7": 0.02, "int8-w8": 0.0})
    assert choose_precision("auto", "cpu", EPYC_AVX2, task="text-classification").dtype == "fp32"
    assert choose_precision("auto", "cpu", EPYC_AVX2, task="feature-extraction").dtype == "int8"
    assert choose_precision("auto", "cpu", CASCADE_LAKE, task="text-classification").dtype == "int8"
    assert choose_precision("auto", "cpu", SAPPHIRE_RAPIDS, task="text-classification").dtype == "bf16"


def test_the_shipped_decision_for_label_outputs(monkeypatch):
    """docs/precision.md: bf16 passes the label-flip gate, int8 does not, so classifiers run bf16 on
    AMX and fp32 on AVX2 / VNNI, while embeddings there run int8."""
    monkeypatch.setattr(precision, "_checked", {})
    for flags in (EPYC_AVX2, CASCADE_LAKE):
        assert choose_precision("auto", "cpu", flags, task="text-classification").dtype == "fp32"
        assert choose_precision("auto", "cpu", flags, task="token-classification").dtype == "fp32"
        assert choose_precision("auto", "cpu", flags, task="feature-extraction").dtype == "int8"
    assert choose_precision("auto", "cpu", SAPPHIRE_RAPIDS, task="question-answering").dtype == "bf16"


def test_failed_check_is_remembered_by_auto(monkeypatch):
    monkeypatch.setattr(precision, "_checked", {"int8-w7": precision.FidelityResult("int8-w7", 16, 0.9, 0.8, False)})
    assert choose_precision("auto", "cpu", EPYC_AVX2).dtype == "fp32"
    monkeypatch.setattr(precision, "_checked", {"int8-w7": precision.FidelityResult("int8-w7", 16, 0.999, 0.99, True)})
    assert choose_precision("auto", "cpu", EPYC_AVX2).dtype == "int8"


def test_explicit_requests(caplog):
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        emulated = choose_precision("bf16", "cpu", EPYC_AVX2)
    assert emulated.dtype == "bf16" and "emulated" in emulated.reason and "emulated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        native = choose_precision("BF16", "cpu", ZEN4)
    assert native.dtype == "bf16" and "avx512_bf16" in native.reason and not caplog.text
    assert choose_precision("int8", "cpu", SAPPHIRE_RAPIDS).int8_weight_bits == 8
    assert choose_precision("int8", "cpu", EPYC_AVX2).int8_weight_bits == 7
    assert choose_precision("fp32", "cpu", SAPPHIRE_RAPIDS).dtype == "fp32"
    with pytest.raises(ConfigError, match="fp16.*auto, fp32, bf16, int8"):
        choose_precision("fp16", "cpu")


def test_devices_and_backends(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert choose_precision("auto", "cuda").dtype == "bf16"
    assert choose_precision("auto", "cuda", failed={"bf16"}).dtype == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_precision("auto", "cuda").dtype == "fp32"
    with pytest.raises(ConfigError, match="CPU only"):
        choose_precision("int8", "cuda")
    assert choose_precision("auto", "cpu", SAPPHIRE_RAPIDS, backend="onnx").dtype == "fp32"
    with pytest.raises(ConfigError, match="torch backend"):
        choose_precision("bf16", "cpu", backend="onnx")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n"
                    "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
                    "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\nflags\t\t: fpu\n")
    info = read_cpu_info(path)
    assert info.model.startswith("Intel(R) Xeon(R) Platinum 8481C") and info.native_bf16
    assert {"amx_bf16", "amx_int8", "avx512_vnni"} <= info.flags and info.source == str(path)
    assert "amx_bf16 yes" in info.summary() and "avx_vnni no" in info.summary()
    # Without the file: torch's dispatch level, which never claims VNNI, bf16 or AMX.
    missing = read_cpu_info(tmp_path / "missing")
    assert missing.source == "torch" and not missing.native_bf16 and not missing.has("avx512_vnni")
    assert missing.flags <= {"avx2", "avx512f"}


def test_this_machine_agrees_with_torch():
    """The cross-check: torch's dispatch level and /proc/cpuinfo tell the same story."""
    info = cpu_info()
    if info.capability == "AVX512":
        assert info.has("avx512f")
    if info.capability in ("AVX2", "AVX512"):
        assert info.has("avx2")


# -- conversions ---------------------------------------------------------------------------------

def test_bf16_converts_the_weights_once_and_outputs_stay_close():
    torch.manual_seed(0)
    config = tiny_config()
    model = BertModel(config).eval()
    batch = random_batch(config)
    with torch.inference_mode():
        reference = model(**batch).sequence_output
    converted = apply_precision(model, PrecisionChoice("bf16", "test", requested="bf16"))
    assert all(p.dtype == torch.bfloat16 for p in converted.parameters())
    assert converted.precision.dtype == "bf16"
    with torch.inference_mode():
        out = converted(**batch).sequence_output.float()
    real = batch["attention_mask"].bool()
    assert torch.isfinite(out).all()
    cosine = torch.nn.functional.cosine_similarity(out[real], reference[real], dim=-1)
    assert cosine.min() > 0.999


@pytest.mark.parametrize("bits, levels", [(7, 63), (8, 127)])
def test_int8_uses_the_chosen_weight_bits(bits, levels):
    torch.manual_seed(0)
    model = apply_precision(BertModel(tiny_config()).eval(), PrecisionChoice("int8", "test", bits, "int8"))
    layers = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert layers and max(int(m.weight.abs().max()) for m in layers) == levels
    assert model.config.extra["quantization_config"]["weight_bits"] == bits
    with pytest.raises(ConfigError, match="weight_bits=6"):
        quantize(BertModel(tiny_config()), weight_bits=6)


def test_an_int8_checkpoint_stays_int8(tmp_path):
    model = quantize(BertModel(tiny_config()).eval())
    kept = apply_precision(model, choose_precision("auto", "cpu", PLAIN, failed=set()))
    assert kept.precision.dtype == "int8" and "checkpoint" in kept.precision.reason
    with pytest.raises(ConfigError, match="checkpoint is int8"):
        apply_precision(model, PrecisionChoice("bf16", "requested", None, "bf16"))


def test_label_flips_counts_changed_argmax():
    assert label_flips(np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 1.0]])) == 0.5


# -- fidelity gates on real sentences --------------------------------------------------------------

def _mrpc_dev(shared_data) -> list[tuple[str, str, int]]:
    path = shared_data / "glue" / "MRPC" / "dev.tsv"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the gates are measured on MRPC dev")
    with open(path, encoding="utf-8-sig") as handle:
        next(handle)
        return [(f[3], f[4], int(f[0])) for f in (line.rstrip("\n").split("\t") for line in handle)]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return BertModel.from_pretrained(minilm_path).eval(), FullTokenizer.from_pretrained(minilm_path)


def test_int8_meets_its_gate_on_mrpc(minilm, shared_data):
    """256 MRPC dev sentences (tools/precision_fidelity.py measures all 816), both int8 paths."""
    model, tokenizer = minilm
    texts = [t for a, b, _ in _mrpc_dev(shared_data) for t in (a, b)][:256]
    for bits in (7, 8):
        result = check_fidelity(model, tokenizer, PrecisionChoice("int8", "test", bits, "int8"), texts, record=False)
        assert result.sentences == 256
        assert result.cosine_mean >= GATES["int8"].cosine_mean and result.cosine_min >= GATES["int8"].cosine_min, result
        assert result.passed


def test_bf16_meets_its_gate_on_mrpc(minilm, shared_data):
    """A few sentences only where bf16 is emulated (10x slower than fp32), 256 where it is native."""
    model, tokenizer = minilm
    texts = [t for a, b, _ in _mrpc_dev(shared_data) for t in (a, b)][:256 if cpu_info().native_bf16 else 24]
    result = check_fidelity(model, tokenizer, PrecisionChoice("bf16", "test", None, "bf16"), texts, record=False)
    assert result.cosine_mean >= GATES["bf16"].cosine_mean and result.cosine_min >= GATES["bf16"].cosine_min, result
    assert result.passed


def test_check_fidelity_records_a_failure_for_auto(minilm, monkeypatch):
    """A gate the path cannot meet: auto stops picking it for the rest of the process."""
    model, tokenizer = minilm
    monkeypatch.setattr(precision, "_checked", {})
    monkeypatch.setitem(precision.GATES, "int8", precision.Gate(1.0, 1.0, 0.0))
    result = check_fidelity(model, tokenizer, PrecisionChoice("int8", "test", 7, "int8"), texts=None)
    assert not result.passed and result.sentences == len(precision.CHECK_SENTENCES)
    assert choose_precision("auto", "cpu", EPYC_AVX2).dtype == "fp32"


def test_sentence_vectors_match_the_pipeline(minilm, minilm_path):
    from bertkit.inference.pipeline import pipeline

    model, tokenizer = minilm
    texts = ["A short one.", "A somewhat longer sentence about the weather in Paris today."]
    p = pipeline(minilm_path, dtype="fp32", normalize=False)
    assert p.model.precision.dtype == "fp32"
    np.testing.assert_allclose(sentence_vectors(model, tokenizer, texts).numpy(), np.array(p(texts)), atol=1e-5)


def test_bf16_label_flips_on_a_fine_tuned_classifier(shared_data):
    """Label flips of a classifier fine-tuned on MRPC (tools/precision_fidelity.py writes it; set
    BERTKIT_MRPC_CLASSIFIER to its directory) over a bounded subset of MRPC dev."""
    directory = os.environ.get("BERTKIT_MRPC_CLASSIFIER")
    if not directory or not (Path(directory) / "config.json").is_file():
        pytest.skip("no fine-tuned MRPC classifier: run tools/precision_fidelity.py and set BERTKIT_MRPC_CLASSIFIER")
    pairs = _mrpc_dev(shared_data)[:48 if not cpu_info().native_bf16 else 408]
    model = BertForSequenceClassification.from_pretrained(directory).eval()
    tokenizer = FullTokenizer.from_pretrained(directory)
    logits = {}
    for name, choice in (("fp32", None), ("bf16", PrecisionChoice("bf16", "test", None, "bf16"))):
        run = model if choice is None else precision.converted_copy(model, choice)
        rows = []
        with torch.inference_mode():
            for a, b, _ in pairs:
                encoded = tokenizer.encode(a, b, max_seq_length=128)
                rows.append(run(**{k: torch.tensor([v]) for k, v in encoded.items()}).logits.float()[0])
        logits[name] = torch.stack(rows)
    assert label_flips(logits["fp32"], logits["bf16"]) <= GATES["bf16"].label_flips


def test_a_server_start_checks_the_path_auto_picks(minilm_path, monkeypatch):
    monkeypatch.setattr(precision, "_checked", {})
    monkeypatch.setattr(precision, "cpu_info", lambda: CpuInfo("mocked AVX2", frozenset(EPYC_AVX2), None, "test"))
    result = precision.check_auto(minilm_path, "cpu")
    assert result.path == "int8-w7" and result.passed and precision._checked == {"int8-w7": result}
    assert precision.check_auto(minilm_path, "cpu") is None  # checked once per process
    monkeypatch.setattr(precision, "cpu_info", lambda: CpuInfo("mocked plain", frozenset(PLAIN), None, "test"))
    assert precision.check_auto(minilm_path, "cpu") is None  # auto is fp32: nothing to check


@pytest.fixture
def tiny_classifier(tmp_path):
    from helpers import TINY_VOCAB

    torch.manual_seed(0)
    BertForSequenceClassification(tiny_config(id2label={0: "no", 1: "yes"})).save_pretrained(
        tmp_path / "clf", tokenizer=FullTokenizer(TINY_VOCAB))
    return tmp_path / "clf"


def test_pipeline_and_info_say_what_was_chosen(tiny_classifier, caplog):
    from types import SimpleNamespace

    from bertkit.inference.pipeline import pipeline
    from bertkit.serve.app import _model_info

    with caplog.at_level(logging.INFO, logger="bertkit"):
        p = pipeline(tiny_classifier, dtype="int8", device="cpu")
    assert "precision int8" in caplog.text
    info = _model_info(SimpleNamespace(name="clf", pipeline=p))["precision"]
    assert info["dtype"] == "int8" and info["requested"] == "int8" and info["int8_weight_bits"] in (7, 8)
    assert pipeline(tiny_classifier, dtype="fp32").model.precision.dtype == "fp32"
    with pytest.raises(ConfigError, match="dtype='fp16'"):
        pipeline(tiny_classifier, dtype="fp16")


def test_dtype_flag(tiny_classifier, capsys, caplog):
    from bertkit.cli.main import main

    with caplog.at_level(logging.INFO, logger="bertkit"):
        assert main(["similarity", "hello there", "hello", "--model", str(tiny_classifier), "--dtype", "INT8"]) == 0
    assert "precision int8" in caplog.text and capsys.readouterr().out.strip()
    with pytest.raises(SystemExit) as exit_code:
        main(["similarity", "a", "b", "--model", str(tiny_classifier), "--dtype", "fp16"])
    assert exit_code.value.code == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
