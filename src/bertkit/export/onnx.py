"""ONNX export of any bertkit model (every head), and a runner that answers like the torch model.

    from bertkit.export.onnx import export_onnx, OnnxModel
    export_onnx(model, "model.onnx")                 # fp32; int8=True adds ONNX Runtime's dynamic int8
    onnx_model = OnnxModel("model.onnx")
    out = onnx_model(input_ids, attention_mask=mask, token_type_ids=types)   # same dataclass as model(...)

Inputs are named as transformers' (input_ids, attention_mask, token_type_ids), with dynamic batch
and sequence axes (and choices, for multiple choice); outputs are named by head (HEAD_OUTPUTS).
The graph is traced with torch.onnx.export's TorchScript exporter: it records the data flow of
one padded example, so the padding mask is always applied (an unpadded batch gives the same
answer through it) and the padded or padding-free path is fixed at export time.
`onnx` and `onnxruntime` are the optional extra `bertkit[onnx]`; nothing imports them before use.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bertkit.config import BertConfig
from bertkit.errors import CheckpointError, ConfigError
from bertkit.heads import HeadOutput, PreTrainingOutput, QuestionAnsweringOutput
from bertkit.io_utils import atomic_directory, atomic_save_with
from bertkit.modeling import BertModelOutput

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Output names per head class, in the order the graph returns them.
HEAD_OUTPUTS = {
    "BertModel": ("last_hidden_state", "pooler_output"),
    "BertForSequenceClassification": ("logits",),
    "BertForMultipleChoice": ("logits",),
    "BertForTokenClassification": ("logits",),
    "BertForQuestionAnswering": ("start_logits", "end_logits"),
    "BertForPreTraining": ("prediction_logits", "seq_relationship_logits"),
}
OPSET = 17


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"ONNX export and the ONNX backend need {module}: pip install 'bertkit[onnx]'") from None


class _Exportable(nn.Module):
    """The model as a function of the three inputs, returning the head's outputs as a tuple."""

    def __init__(self, model: nn.Module, unpad: bool):
        super().__init__()
        self.model, self.unpad = model, unpad

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, unpad=self.unpad)
        if isinstance(out, BertModelOutput):
            return (out.sequence_output,) if out.pooled_output is None else (out.sequence_output, out.pooled_output)
        if isinstance(out, QuestionAnsweringOutput):
            return out.start_logits, out.end_logits
        if isinstance(out, PreTrainingOutput):
            return out.prediction_logits, out.seq_relationship_logits
        return (out.logits,)


def _example(model: nn.Module) -> tuple[torch.Tensor, ...]:
    """A padded example (rows of 8 and 5 tokens), with choices for multiple choice."""
    vocab = model.config.vocab_size
    input_ids = torch.arange(16).remainder(vocab - 1).add(1).view(2, 8)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    example = (input_ids * attention_mask, attention_mask, token_type_ids)
    if type(model).__name__ == "BertForMultipleChoice":
        example = tuple(x.unsqueeze(1).expand(-1, 3, -1).contiguous() for x in example)
    return example


def export_onnx(model: nn.Module, path, *, int8: bool = False, unpad: bool = False) -> Path:
    """Write `model` to `path` as ONNX (atomically); int8 quantizes its MatMul weights per channel
    with ONNX Runtime's dynamic quantizer. unpad=True traces the padding-free path instead."""
    name = type(model).__name__
    if name not in HEAD_OUTPUTS:
        raise ConfigError(f"cannot export {name}: ONNX export covers {', '.join(HEAD_OUTPUTS)}")
    if model.config.extra.get("quantization_config"):
        raise ConfigError("export the fp32 checkpoint with --int8 rather than a bertkit int8 one: the int8 "
                          "kernels bertkit runs are PyTorch's and have no ONNX form")
    _need("onnx")
    outputs = HEAD_OUTPUTS[name]
    if name == "BertModel" and model.pooler is None:
        outputs = outputs[:1]
    example = _example(model)
    token_axes = {0: "batch", 1: "choices", 2: "sequence"} if example[0].dim() == 3 else {0: "batch", 1: "sequence"}
    per_token = {"last_hidden_state", "prediction_logits", "start_logits", "end_logits"}
    per_token |= {"logits"} if name == "BertForTokenClassification" else set()
    dynamic_axes = {key: token_axes for key in INPUT_NAMES}
    dynamic_axes |= {out: ({0: "batch", 1: "sequence"} if out in per_token else
                           {0: "batch", 1: "choices"} if name == "BertForMultipleChoice" else {0: "batch"})
                     for out in outputs}
    model = model.eval()
    path = Path(path)
    metadata = {"bertkit_class": name, "bertkit_outputs": json.dumps(outputs),
                "bertkit_config": json.dumps(model.config.to_dict())}
    with tempfile.TemporaryDirectory() as tmp:
        traced = Path(tmp) / "model.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            # The tracer warns that Python-side checks (the position-table bound, the "anything
            # padded?" test) become constants: intended, the example is padded (see the docstring).
            warnings.simplefilter("ignore")
            torch.onnx.export(_Exportable(model, unpad).eval(), example, str(traced), input_names=list(INPUT_NAMES),
                              output_names=list(outputs), dynamic_axes=dynamic_axes, opset_version=OPSET,
                              dynamo=False)
        model.eval()  # the exporter restores the wrapper's mode, and with it the model's
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(tmp) / "int8.onnx"
            quantize_dynamic(traced, quantized, per_channel=True, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul"])
            traced = quantized
        onnx = _need("onnx")
        graph = onnx.load(str(traced))
        for key, value in {**metadata, "bertkit_int8": json.dumps(int8)}.items():
            graph.metadata_props.add(key=key, value=value)
        atomic_save_with(path, lambda target: onnx.save(graph, target))
    return path


def export_directory(model: nn.Module, source_directory, output_dir, *, int8: bool = False,
                     unpad: bool = False) -> Path:
    """`output_dir`/model.onnx, with what `pipeline(output_dir, backend="onnx")` reads beside it:
    config.json and the source's companion files (vocab, tokenizer and pooling settings); no torch
    weights. Exporting into the checkpoint's own directory adds model.onnx there and nothing else.
    Returns the .onnx file's path."""
    from bertkit.export.files import copy_companions

    output_dir, source_directory = Path(output_dir), Path(source_directory)
    if output_dir.exists() and output_dir.resolve() == source_directory.resolve():
        return export_onnx(model, output_dir / "model.onnx", int8=int8, unpad=unpad)
    with atomic_directory(output_dir) as tmp:
        copy_companions(source_directory, tmp)
        model.config.to_json_file(tmp / "config.json", architecture=type(model).__name__)
        export_onnx(model, tmp / "model.onnx", int8=int8, unpad=unpad)
    return output_dir / "model.onnx"


def exported_file(path) -> Path | None:
    """The ONNX file `path` names: an .onnx file, or a directory's model.onnx; None when there is none."""
    path = Path(path).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        return path
    if path.is_dir() and (path / "model.onnx").is_file():
        return path / "model.onnx"
    return None


class OnnxModel:
    """Runs an exported file with ONNX Runtime and returns what the torch model's forward returns
    (HeadOutput, QuestionAnsweringOutput, PreTrainingOutput or BertModelOutput), as torch tensors,
    so code written against the torch model (a pipeline) can take this one instead."""

    def __init__(self, path, *, threads: int | None = None, providers: list[str] | None = None):
        ort = _need("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"ONNX file not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "bertkit_class" not in meta:
            raise CheckpointError(f"{path} was not exported by bertkit (no bertkit_class in its metadata)")
        self.model_class = meta["bertkit_class"]
        self.output_names = tuple(json.loads(meta["bertkit_outputs"]))
        self.config = BertConfig.from_dict(json.loads(meta["bertkit_config"]))
        self.int8 = json.loads(meta.get("bertkit_int8", "false"))
        self.path = path
        self.device = torch.device("cpu")

    def eval(self) -> "OnnxModel":
        return self

    def to(self, device) -> "OnnxModel":
        if torch.device(device).type != "cpu":
            raise ConfigError(f"the ONNX backend runs on CPU here, not {device}")
        return self

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, masked_lm_positions=None,
                 **unsupported):
        if unsupported:
            raise TypeError(f"the ONNX backend takes input_ids, attention_mask, token_type_ids (and "
                            f"masked_lm_positions for pre-training heads) only, not {sorted(unsupported)}")
        ids = torch.as_tensor(input_ids)
        feeds = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask),
            "token_type_ids": torch.zeros_like(ids) if token_type_ids is None else torch.as_tensor(token_type_ids),
        }
        feeds = {k: np.ascontiguousarray(v.cpu().numpy().astype(np.int64)) for k, v in feeds.items()}
        outputs = [torch.from_numpy(x) for x in self.session.run(list(self.output_names), feeds)]
        if self.model_class == "BertModel":
            return BertModelOutput(sequence_output=outputs[0], pooled_output=outputs[1] if len(outputs) > 1 else None)
        if self.model_class == "BertForQuestionAnswering":
            return QuestionAnsweringOutput(*outputs)
        if self.model_class == "BertForPreTraining":
            if masked_lm_positions is not None:  # the graph scores every position; keep the asked ones
                index = torch.as_tensor(masked_lm_positions).unsqueeze(-1).expand(-1, -1, outputs[0].size(-1))
                outputs[0] = outputs[0].gather(1, index)
            return PreTrainingOutput(*outputs)
        return HeadOutput(logits=outputs[0])

    forward = __call__


def onnx_backend(model: nn.Module) -> OnnxModel:
    """`model` as an OnnxModel, exported now into a temporary file (a saved export is read with
    OnnxModel(path) instead: `bertkit export` writes one)."""
    # The file lives as long as the OnnxModel (removed when it is collected), so that its path stays
    # good for Pipeline.save_pretrained.
    tmp = tempfile.mkdtemp(prefix="bertkit-onnx-")
    try:
        onnx_model = OnnxModel(export_onnx(model, Path(tmp) / "model.onnx"))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    weakref.finalize(onnx_model, shutil.rmtree, tmp, ignore_errors=True)
    return onnx_model
