"""Moved to bertkit.int8 (int8 is a model-level transform, not training-time compression); this
import path is kept for one release."""

from bertkit.int8 import (DEFAULT_KEEP_FP32, METHOD, PROJECTIONS, WEIGHT_BITS, WEIGHT_LEVELS, Int8Linear,
                          Int8SelfAttention, prepare_quantized, quantization_config, quantize, weight_levels)

__all__ = ["DEFAULT_KEEP_FP32", "METHOD", "PROJECTIONS", "WEIGHT_BITS", "WEIGHT_LEVELS", "Int8Linear",
           "Int8SelfAttention", "prepare_quantized", "quantization_config", "quantize", "weight_levels"]
