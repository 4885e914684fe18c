"""Inference: `pipeline()` from raw text to answers for every head."""

from bertkit.inference.pipeline import TASKS, Pipeline, pipeline

__all__ = ["TASKS", "Pipeline", "pipeline"]
