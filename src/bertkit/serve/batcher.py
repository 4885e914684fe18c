"""Dynamic batching: features from many requests share one model batch.

Handlers enqueue features and await their outputs; one loop per model collects what is waiting
(for at most `max_wait_ms` after the oldest arrival, or until one full batch is there), sorts that
window by length so each batch pads little, cuts it into batches bounded by a token budget and a
sequence count, and runs each batch in the model's own thread, so the event loop never blocks on
the model. A batch that raises is split in halves and rerun, so a bad input fails alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bertkit.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)


@dataclass
class BatchLimits:
    max_batch_tokens: int = 16384  # padded tokens: the longest sequence x the sequences in the batch
    max_batch_requests: int = 128  # sequences per batch
    # How long the oldest waiting sequence may wait for company while the model is idle. Under load
    # the batch the model is running is the window, so 0 costs no latency and loses little batching.
    max_wait_ms: float = 0.0

    def cost(self, longest: int, count: int) -> int:
        """What a batch costs the model: the pipeline pads each batch to its longest sequence."""
        return longest * count


@dataclass
class _Work:
    feature: dict
    tokens: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """The queue and batching loop of one model; `forward(features) -> outputs` runs in its thread."""

    def __init__(self, name: str, forward: Callable[[list[dict]], Sequence[dict]],
                 num_tokens: Callable[[dict], int], limits: BatchLimits, metrics: ServeMetrics):
        self.name = name
        self.limits = limits
        self._forward = forward
        self._num_tokens = num_tokens
        self._metrics = metrics
        self._pending: list[_Work] = []
        self._arrived = asyncio.Event()
        # One thread: the model uses all cores per batch; two batches at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bertkit-serve-{name}")
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{self.name}")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for work in self._pending:
            work.future.cancel()
        self._pending.clear()
        self._executor.shutdown(wait=True)

    async def run_direct(self, features: list[dict]) -> Sequence[dict]:
        """One batch outside the queue, in the model's thread (the warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, features)

    async def submit(self, features: Sequence[dict]) -> list[dict]:
        """The outputs of `features`, in order. Cancelling the caller drops the features that have
        not reached a batch yet (a client that went away)."""
        if self._loop_task is None or self._loop_task.done():
            raise RuntimeError(f"the batcher of model {self.name!r} is not running")
        loop = asyncio.get_running_loop()
        works = [_Work(feature, self._num_tokens(feature), loop.create_future()) for feature in features]
        self._pending.extend(works)
        self._metrics.queue_depth.labels(self.name).inc(len(works))
        self._arrived.set()
        # gather cancels the remaining futures when the caller is cancelled; the loop skips them.
        return list(await asyncio.gather(*(work.future for work in works)))

    def _window_is_full(self) -> bool:
        works = [work for work in self._pending if not work.future.done()]
        if len(works) >= self.limits.max_batch_requests:
            return True
        return self.limits.cost(max((work.tokens for work in works), default=0), len(works)) >= \
            self.limits.max_batch_tokens

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._pending[0].enqueued + self.limits.max_wait_ms / 1000
            while not self._window_is_full() and (remaining := deadline - time.perf_counter()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except TimeoutError:
                    break
            window, self._pending = self._pending, []
            self._metrics.queue_depth.labels(self.name).dec(len(window))
            window = sorted((work for work in window if not work.future.done()), key=lambda work: work.tokens)
            for batch in self._cut(window):
                # A client may have gone away while the earlier batches of the window ran.
                batch = [work for work in batch if not work.future.done()]
                if batch:
                    await self._run_batch(batch)

    def _cut(self, window: list[_Work]) -> list[list[_Work]]:
        """Consecutive batches of a length-sorted window within the limits (a sequence longer than
        the token budget still runs, alone)."""
        batches: list[list[_Work]] = []
        current: list[_Work] = []
        for work in window:  # ascending length: `work` is the longest of `current + [work]`
            if current and (len(current) + 1 > self.limits.max_batch_requests
                            or self.limits.cost(work.tokens, len(current) + 1) > self.limits.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(work)
        if current:
            batches.append(current)
        return batches

    async def _run_batch(self, batch: list[_Work]) -> None:
        started = time.perf_counter()
        for work in batch:
            self._metrics.queue_seconds.labels(self.name).observe(started - work.enqueued)
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self._forward, [work.feature for work in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(batch)} features")
        except Exception as err:  # noqa: BLE001 - the error goes to the callers, the loop lives on
            self._metrics.failed_batches.labels(self.name).inc()
            if len(batch) == 1:
                logger.warning("model %s failed on one input: %s: %s", self.name, type(err).__name__, err)
                if not batch[0].future.done():
                    batch[0].future.set_exception(err)
                return
            # Find the input(s) that raise: the others still get their answers.
            half = len(batch) // 2
            await self._run_batch(batch[:half])
            await self._run_batch(batch[half:])
            return
        self._metrics.inference_seconds.labels(self.name).observe(time.perf_counter() - started)
        self._metrics.batch_size.labels(self.name).observe(len(batch))
        tokens = sum(work.tokens for work in batch)
        self._metrics.batch_tokens.labels(self.name).observe(tokens)
        self._metrics.tokens.labels(self.name).inc(tokens)
        for work, output in zip(batch, outputs):
            if not work.future.done():
                work.future.set_result(output)
