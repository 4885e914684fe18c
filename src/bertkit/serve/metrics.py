"""Prometheus metrics of one server, in its own registry (several apps may live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Seconds: from a millisecond (a queue that was empty) to tens of seconds (an overloaded server).
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TOKENS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


class ServeMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        kw = {"registry": self.registry}
        self.requests = Counter("bertkit_requests", "HTTP requests by route and status", ["route", "status"], **kw)
        self.request_seconds = Histogram("bertkit_request_seconds", "HTTP request latency", ["route"],
                                         buckets=_SECONDS, **kw)
        self.queue_depth = Gauge("bertkit_queue_depth", "sequences waiting for a batch", ["model"], **kw)
        self.batch_size = Histogram("bertkit_batch_size", "sequences per model batch", ["model"],
                                    buckets=_SIZES, **kw)
        self.batch_tokens = Histogram("bertkit_batch_tokens", "real tokens per model batch", ["model"],
                                      buckets=_TOKENS, **kw)
        self.queue_seconds = Histogram("bertkit_queue_seconds", "time a sequence waits before its batch runs",
                                       ["model"], buckets=_SECONDS, **kw)
        self.inference_seconds = Histogram("bertkit_inference_seconds", "model time per batch", ["model"],
                                           buckets=_SECONDS, **kw)
        self.tokens = Counter("bertkit_tokens", "real tokens run through the model", ["model"], **kw)
        self.failed_batches = Counter("bertkit_failed_batches", "model batches that raised", ["model"], **kw)

    def render(self) -> bytes:
        return generate_latest(self.registry)
