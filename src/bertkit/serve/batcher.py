"""Dynamic batching: features from many requests share one model batch.

Handlers enqueue features and await their outputs. A model thread that is free takes a window of
what is waiting (after at most `max_wait_ms` for company when the model was idle), sorts it by
length so each batch pads little, and cuts it into batches bounded by a token budget and a
sequence count; the model threads (`workers`, one by default) run the window's batches, then the
next window's, and hand each output back to the event loop. A window holds at most one batch per
worker, taken from the waiting requests in turn (one sequence of each, then a second of each, ...;
the next window starts with the requests this one did not reach), so a request that brings thousands of sequences gets a fair share of each window, not all of it: a
small request that arrives meanwhile runs in the next window. The threads form their batches
themselves, so the model never waits for a busy event loop, and the event loop never runs the
model. A batch that raises is split in halves and rerun, so a bad input fails alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bertkit.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)


@dataclass
class BatchLimits:
    # What max_batch_tokens counts: with the padding-free encoder (bertkit's default) a batch costs its
    # real tokens (it runs padded only under 10% padding, where the two counts differ by less than
    # that); padding_free=False counts padded tokens, the longest sequence x the sequences.
    max_batch_tokens: int = 16384
    max_batch_requests: int = 128  # sequences per batch
    # How long the oldest waiting sequence may wait for company while the model is idle. Under load
    # the batch the model is running is the window, so 0 costs no latency and loses little batching.
    max_wait_ms: float = 0.0
    # Model threads, each running whole batches (torch releases the GIL inside its ops). On a CPU,
    # two threads with one torch thread each avoid the intra-op synchronisation of one with two.
    workers: int = 1
    padding_free: bool = True

    def cost(self, total: int, longest: int, count: int) -> int:
        """What a batch of `count` sequences, `total` real tokens, the longest `longest`, costs the model."""
        return total if self.padding_free else longest * count


@dataclass
class _Work:
    feature: object
    tokens: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    """The queue and the model thread of one model; `forward(features) -> outputs` runs there."""

    def __init__(self, name: str, forward: Callable[[list], Sequence], num_tokens: Callable[[object], int],
                 limits: BatchLimits, metrics: ServeMetrics):
        self.name = name
        self.limits = limits
        self._forward = forward
        self._num_tokens = num_tokens
        self._metrics = metrics
        self._pending: list[list[_Work]] = []  # per request (submit call), in arrival order: not yet in a window
        self._ready: list[list[_Work]] = []  # the current window's batches not yet taken
        self._changed = threading.Condition()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads = [threading.Thread(target=self._run, name=f"bertkit-serve-{name}-{i}", daemon=True)
                         for i in range(limits.workers)]

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for thread in self._threads:
            thread.start()

    async def close(self) -> None:
        """Stop after the batches that are running; what still waits is cancelled."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        for work in [*itertools.chain(*self._pending), *itertools.chain(*self._ready)]:
            work.future.cancel()
        self._pending.clear()
        self._ready.clear()

    async def submit(self, features: Sequence) -> list:
        """The outputs of `features`, in order. Cancelling the caller drops the features that have
        not reached a batch yet (a client that went away)."""
        if self._loop is None or self._closing:
            raise RuntimeError(f"the batcher of model {self.name!r} is not running")
        if not features:
            return []
        loop = asyncio.get_running_loop()
        works = [_Work(feature, self._num_tokens(feature), loop.create_future()) for feature in features]
        self._metrics.queue_depth.labels(self.name).inc(len(works))
        with self._changed:
            self._pending.append(works)
            self._changed.notify()
        # gather cancels the remaining futures when the caller is cancelled; the thread skips them.
        return list(await asyncio.gather(*(work.future for work in works)))

    # -- the model thread -----------------------------------------------------------------

    def _window_is_full(self) -> bool:
        works = [work for work in itertools.chain(*self._pending) if not work.future.done()]
        if len(works) >= self.limits.max_batch_requests:
            return True
        tokens = [work.tokens for work in works]
        return self.limits.cost(sum(tokens), max(tokens, default=0), len(tokens)) >= self.limits.max_batch_tokens

    def _take_window(self) -> list[_Work]:
        """Up to one batch per worker of what waits, a sequence of each request in turn; what is
        left waits for the next window (ahead of what arrives later)."""
        for queue in self._pending:  # a client that went away
            queue[:] = [work for work in queue if not work.future.done()]
        queues = [queue for queue in self._pending if queue]
        max_tokens = self.limits.max_batch_tokens * self.limits.workers
        max_count = self.limits.max_batch_requests * self.limits.workers
        window: list[_Work] = []
        total = longest = 0
        taken = [0] * len(queues)
        full = False
        while not full and any(n < len(queue) for n, queue in zip(taken, queues)):
            for q, queue in enumerate(queues):
                if taken[q] == len(queue):
                    continue
                work = queue[taken[q]]
                if len(window) == max_count or (window and self.limits.cost(
                        total + work.tokens, max(longest, work.tokens), len(window) + 1) > max_tokens):
                    full = True
                    break
                window.append(work)
                taken[q] += 1
                total, longest = total + work.tokens, max(longest, work.tokens)
        # The requests this window served wait behind those it did not, so that a window smaller than
        # the number of waiting requests still reaches each of them in turn.
        self._pending = [queue[n:] for queue, n in zip(queues, taken) if n == 0] + \
                        [queue[n:] for queue, n in zip(queues, taken) if 0 < n < len(queue)]
        return window

    def _next_batch(self) -> list[_Work] | None:
        """The next batch of the current window, or of a new window once it is done; None on close."""
        with self._changed:
            while not self._closing:
                if self._ready:
                    # A client may have gone away while the earlier batches of the window ran.
                    batch = [work for work in self._ready.pop(0) if not work.future.done()]
                    if batch:
                        return batch
                    continue
                if not self._pending:
                    self._changed.wait()
                    continue
                deadline = min(queue[0].enqueued for queue in self._pending) + self.limits.max_wait_ms / 1000
                while self._pending and not self._window_is_full() and \
                        (remaining := deadline - time.perf_counter()) > 0:
                    self._changed.wait(remaining)
                before = sum(map(len, self._pending))
                window = self._take_window()
                self._metrics.queue_depth.labels(self.name).dec(before - sum(map(len, self._pending)))
                self._ready = self._cut(sorted(window, key=lambda work: work.tokens))
                if len(self._ready) > 1:
                    self._changed.notify_all()  # idle workers share this window
            return None

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run_batch(batch)

    def _cut(self, window: list[_Work]) -> list[list[_Work]]:
        """Consecutive batches of a length-sorted window within the limits (a sequence longer than
        the token budget still runs, alone)."""
        batches: list[list[_Work]] = []
        current: list[_Work] = []
        total = 0
        for work in window:  # ascending length: `work` is the longest of `current + [work]`
            if current and (len(current) + 1 > self.limits.max_batch_requests or self.limits.cost(
                    total + work.tokens, work.tokens, len(current) + 1) > self.limits.max_batch_tokens):
                batches.append(current)
                current, total = [], 0
            current.append(work)
            total += work.tokens
        if current:
            batches.append(current)
        return batches

    def _run_batch(self, batch: list[_Work]) -> None:
        started = time.perf_counter()
        for work in batch:
            self._metrics.queue_seconds.labels(self.name).observe(started - work.enqueued)
        try:
            outputs = self._forward([work.feature for work in batch])
            if len(outputs) != len(batch):
                raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(batch)} features")
        except Exception as err:  # noqa: BLE001 - the error goes to the callers, the thread lives on
            self._metrics.failed_batches.labels(self.name).inc()
            if len(batch) == 1:
                logger.warning("model %s failed on one input: %s: %s", self.name, type(err).__name__, err)
                self._loop.call_soon_threadsafe(_settle, batch[0].future, None, err)
                return
            # Find the input(s) that raise: the others still get their answers.
            half = len(batch) // 2
            self._run_batch(batch[:half])
            self._run_batch(batch[half:])
            return
        self._metrics.inference_seconds.labels(self.name).observe(time.perf_counter() - started)
        self._metrics.batch_size.labels(self.name).observe(len(batch))
        tokens = sum(work.tokens for work in batch)
        self._metrics.batch_tokens.labels(self.name).observe(tokens)
        self._metrics.tokens.labels(self.name).inc(tokens)
        self._loop.call_soon_threadsafe(_settle_all, [work.future for work in batch], outputs)


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if not future.done():  # the caller may have gone away
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _settle_all(futures: list[asyncio.Future], outputs: Sequence) -> None:
    for future, output in zip(futures, outputs):
        _settle(future, output, None)
