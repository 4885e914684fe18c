"""Dynamic int8 quantization of the encoder's Linear layers (CPU, fbgemm kernels).

    from bertkit import quantize
    model = quantize(BertModel.from_pretrained(path))       # in place; returns the model
    model.save_pretrained(out)                               # int8 weights + config["quantization_config"]
    BertModel.from_pretrained(out)                           # loads as int8 again

Weights are int8 with one scale per output channel (symmetric); activations are quantized per
call to uint8 with a scale over the whole input (dynamic), which is what fbgemm's
`quantized::linear_dynamic` computes, as `torch.ao.quantization.quantize_dynamic` and ONNX
Runtime's dynamic int8 do. What bertkit adds for fidelity, measured on MiniLM sentence vectors
(bench/bench_inference.py prints the cosine beside the speed):
  * per-channel weight scales (a per-tensor scale is set by the largest row);
  * the padding-free path, so that padding rows never widen an activation's range;
  * 8-bit activations with 7-bit weights, where torch's default on x86 is the reverse (see WEIGHT_LEVELS),
    and 8-bit weights as well on CPUs with AVX-512 VNNI (`weight_bits=8`, which inference.precision picks);
  * `keep_fp32` leaves chosen projections in fp32; the FFN output ("output"), whose GELU inputs
    carry the largest outliers, is the one that pays most (README's int8 section has the figures).
Only the encoder is quantized; embeddings, LayerNorms, the pooler and the heads stay fp32.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from bertkit.errors import ConfigError
from bertkit.modeling import BertLayer, BertPreTrainedModel, BertSelfAttention

METHOD = "dynamic-int8"
# The Linear layers of a BertLayer, by the name used in `keep_fp32`.
PROJECTIONS = ("qkv", "attention_output", "intermediate", "output")
DEFAULT_KEEP_FP32: tuple[str, ...] = ()
# Weights use 7 bits (+-63) so that activations can use all 8: on AVX2, fbgemm sums pairs of
# u8 x s8 products in int16, and 255 * 63 * 2 < 32767 never saturates. torch's quantize_dynamic
# drops the activations' bit instead (reduce_range); measured on MiniLM sentence vectors, the
# activations' bit is worth far more (mean cosine 0.976 with 7-bit activations, 0.992 here, the
# same as 8-bit weights with 8-bit activations, which can saturate on AVX2).
# With AVX-512 VNNI, fbgemm sums u8 x s8 products straight into int32 (vpdpbusd): nothing saturates, and
# `weight_bits=8` (+-127) halves the weights' rounding error.
WEIGHT_LEVELS = 63
WEIGHT_BITS = (7, 8)


def weight_levels(weight_bits: int) -> int:
    if weight_bits not in WEIGHT_BITS:
        raise ConfigError(f"weight_bits={weight_bits!r}: use 7 (any x86 CPU) or 8 (CPUs with avx512_vnni)")
    return 2 ** (weight_bits - 1) - 1


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 (one scale per output row, |W| <= 63, or 127 with 8-bit weights) and x
    quantized per call.

    The state is plain tensors (int8 weight, float scales and bias), so it saves to safetensors
    and loads by name; the kernel's packed form is rebuilt whenever those tensors change.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features))
        self._packed = None
        self._packed_key = None

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None, per_channel: bool = True,
                   weight_bits: int = 7) -> "Int8Linear":
        """Symmetric int8 of a float (out, in) weight: scale = max |w| / levels per row (or overall),
        levels = WEIGHT_LEVELS (63) for 7-bit weights, 127 for 8-bit ones."""
        out_features, in_features = weight.shape
        levels = weight_levels(weight_bits)
        module = cls(in_features, out_features)
        weight = weight.detach().float()
        peak = weight.abs().amax(dim=1) if per_channel else weight.abs().max().expand(out_features)
        scale = peak.clamp(min=1e-8) / levels
        with torch.no_grad():
            module.weight.copy_(torch.round(weight / scale[:, None]).clamp(-levels, levels).to(torch.int8))
            module.weight_scale.copy_(scale)
            if bias is not None:
                module.bias.copy_(bias.detach().float())
        return module

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight.float() * self.weight_scale[:, None]

    def _packed_weight(self):
        # Tensors' version counters move on every in-place change (loading copies into them).
        key = (self.weight._version, self.weight_scale._version, self.bias._version, self.weight.data_ptr())
        if self._packed is None or key != self._packed_key:
            scale = self.weight_scale.double()
            with warnings.catch_warnings():
                # torch marks its quantized tensor types deprecated; fbgemm's dynamic linear still
                # takes its weight in that form (and is what quantize_dynamic itself runs).
                warnings.simplefilter("ignore", UserWarning)
                qweight = torch._make_per_channel_quantized_tensor(
                    self.weight, scale, torch.zeros_like(scale, dtype=torch.long), 0)
            self._packed = torch.ops.quantized.linear_prepack(qweight, self.bias)
            self._packed_key = key
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            raise RuntimeError("int8 layers are for inference; train the fp32 model and quantize it afterwards")
        # reduce_range=False: all 8 bits for the activations (see WEIGHT_LEVELS).
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self._packed_weight(), False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"

    def __getstate__(self):
        # The packed weight is a kernel object, rebuilt from the tensors on first use.
        state = self.__dict__.copy()
        state["_packed"] = state["_packed_key"] = None
        return state


class Int8SelfAttention(BertSelfAttention):
    """BertSelfAttention whose q, k and v projections are one Int8Linear (`qkv`)."""

    def project_qkv(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.qkv(hidden_states)


def _check_model(model: nn.Module) -> list[BertLayer]:
    layers = [m for m in model.modules() if isinstance(m, BertLayer)]
    if not isinstance(model, BertPreTrainedModel) or not layers:
        raise ConfigError(f"quantize needs a bertkit model (BertModel or a BertFor* head), got {type(model).__name__}")
    return layers


def _resolve_keep(keep_fp32) -> tuple[str, ...]:
    keep = tuple(keep_fp32)
    unknown = set(keep) - set(PROJECTIONS)
    if unknown:
        raise ConfigError(f"keep_fp32: unknown projection(s) {sorted(unknown)}; choose from {PROJECTIONS}")
    return keep


def _convert_layer(layer: BertLayer, keep: tuple[str, ...], per_channel: bool, from_weights: bool,
                   weight_bits: int = 7) -> None:
    """Swap the layer's Linear modules for Int8Linear, quantizing their weights when `from_weights`
    (else only building the structure, for a checkpoint's int8 state to be loaded into)."""

    def convert(linear: nn.Linear) -> Int8Linear:
        if from_weights:
            return Int8Linear.from_float(linear.weight, linear.bias, per_channel, weight_bits)
        return Int8Linear(linear.in_features, linear.out_features)

    attention = layer.attention.self
    if "qkv" not in keep:
        parts = (attention.query, attention.key, attention.value)
        fused = nn.Linear(attention.query.in_features, sum(p.out_features for p in parts))
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]))
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
        qkv = convert(fused)
        del attention.query, attention.key, attention.value
        attention.__class__ = Int8SelfAttention  # adds only project_qkv; the state stays the module's
        attention.qkv = qkv
    if "attention_output" not in keep:
        layer.attention.output.dense = convert(layer.attention.output.dense)
    if "intermediate" not in keep:
        layer.intermediate.dense = convert(layer.intermediate.dense)
    if "output" not in keep:
        layer.output.dense = convert(layer.output.dense)


def quantization_config(per_channel: bool = True, keep_fp32=DEFAULT_KEEP_FP32, weight_bits: int = 7) -> dict:
    return {"method": METHOD, "per_channel": bool(per_channel), "keep_fp32": list(_resolve_keep(keep_fp32)),
            "weight_bits": weight_bits}


def quantize(model: nn.Module, *, per_channel: bool = True, keep_fp32=DEFAULT_KEEP_FP32,
             weight_bits: int = 7) -> nn.Module:
    """Quantize `model`'s encoder to int8 in place (eval mode, CPU) and return it.

    keep_fp32 names the projections of every layer left in fp32: any of "qkv",
    "attention_output", "intermediate", "output" (the FFN output). Default: none.
    weight_bits: 7 (default; safe on every x86 CPU) or 8 (for CPUs with avx512_vnni only: on AVX2 the
    kernel's int16 pair sums can saturate). The config records all three, so save_pretrained /
    from_pretrained round-trip the int8 model.
    """
    layers = _check_model(model)
    if model.config.extra.get("quantization_config"):
        raise ConfigError("this model is already quantized")
    keep = _resolve_keep(keep_fp32)
    weight_levels(weight_bits)  # checked before any layer changes
    if next(model.parameters()).device.type != "cpu":
        raise ConfigError("int8 quantization runs on CPU: move the model with model.cpu() first")
    model.eval()
    for layer in layers:
        _convert_layer(layer, keep, per_channel, from_weights=True, weight_bits=weight_bits)
    model.config.extra["quantization_config"] = quantization_config(per_channel, keep, weight_bits)
    return model


def prepare_quantized(model: nn.Module, config: dict) -> None:
    """Give a freshly built fp32 model the int8 structure a saved `quantization_config` describes,
    so that the checkpoint's int8 tensors load into it by name (checkpoint/load.py calls this)."""
    if not isinstance(config, dict) or config.get("method") != METHOD:
        raise ConfigError(f"quantization_config {config!r}: bertkit reads method '{METHOD}' only")
    keep = _resolve_keep(config.get("keep_fp32", DEFAULT_KEEP_FP32))
    for layer in _check_model(model):
        _convert_layer(layer, keep, bool(config.get("per_channel", True)), from_weights=False)
    model.eval()
