"""The batcher alone: windows, limits, routing of outputs, faults and dropped work."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bertkit.serve.batcher import Batcher, BatchLimits, _Work
from bertkit.serve.metrics import ServeMetrics


class RecordingModel:
    """forward echoes each feature's id; a feature marked "bad" raises; batches are recorded."""

    def __init__(self, gate: threading.Event | None = None):
        self.batches: list[list[int]] = []
        self.gate = gate
        self.entered = threading.Event()  # set once a batch is inside forward

    def forward(self, features):
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=30)
        self.batches.append([f["id"] for f in features])
        if any(f.get("bad") for f in features):
            raise ValueError("bad feature")
        return [{"id": f["id"]} for f in features]


def make_batcher(model, **limits) -> Batcher:
    return Batcher("m", model.forward, lambda f: f["len"], BatchLimits(**limits), ServeMetrics())


def test_cut_sorted_window_respects_the_token_budget_and_the_count():
    batcher = make_batcher(RecordingModel(), max_batch_tokens=40, max_batch_requests=3, padding_free=False)
    window = [_Work({"len": n}, n, None) for n in (2, 3, 5, 8, 9, 10, 50)]
    batches = [[w.tokens for w in batch] for batch in batcher._cut(window)]
    # padded cost = longest x count: 2,3,5 -> 15; 8,9,10 -> 30; 50 alone is over budget but still runs
    assert batches == [[2, 3, 5], [8, 9, 10], [50]]
    batcher = make_batcher(RecordingModel(), max_batch_tokens=20, max_batch_requests=100, padding_free=False)
    assert [[w.tokens for w in b] for b in batcher._cut(window)] == [[2, 3, 5], [8, 9], [10], [50]]
    # The padding-free encoder's cost is the real tokens: 2+3+5+8 = 18; 9+10 = 19; 50 alone.
    batcher = make_batcher(RecordingModel(), max_batch_tokens=20, max_batch_requests=100)
    assert [[w.tokens for w in b] for b in batcher._cut(window)] == [[2, 3, 5, 8], [9, 10], [50]]


def test_concurrent_callers_share_batches_sorted_by_length_and_get_their_own_outputs():
    model = RecordingModel()

    async def main():
        batcher = make_batcher(model, max_batch_tokens=10_000, max_batch_requests=64, max_wait_ms=50)
        batcher.start()
        lengths = [[7, 3], [1], [9, 2, 5], [4]]
        calls = [batcher.submit([{"id": (c, i), "len": n} for i, n in enumerate(ls)]) for c, ls in enumerate(lengths)]
        results = await asyncio.gather(*calls)
        await batcher.close()
        return lengths, results

    lengths, results = asyncio.run(main())
    for c, (ls, outputs) in enumerate(zip(lengths, results)):
        assert [o["id"] for o in outputs] == [(c, i) for i in range(len(ls))]
    assert len(model.batches) == 1  # all four callers in one batch, shortest first
    length_of = {(c, i): n for c, ls in enumerate(lengths) for i, n in enumerate(ls)}
    assert [length_of[key] for key in model.batches[0]] == [1, 2, 3, 4, 5, 7, 9]


def test_a_raising_feature_fails_alone():
    model = RecordingModel()

    async def main():
        batcher = make_batcher(model, max_wait_ms=50)
        batcher.start()
        good = [batcher.submit([{"id": i, "len": 3}]) for i in range(5)]
        bad = batcher.submit([{"id": "bad", "len": 3, "bad": True}])
        results = await asyncio.gather(*good, bad, return_exceptions=True)
        after = await batcher.submit([{"id": "after", "len": 3}])
        await batcher.close()
        return results, after

    results, after = asyncio.run(main())
    assert [r[0]["id"] for r in results[:5]] == list(range(5))
    assert isinstance(results[5], ValueError)
    assert after == [{"id": "after"}]


def test_cancelled_callers_work_is_dropped_before_it_runs():
    gate = threading.Event()
    model = RecordingModel(gate)

    async def main():
        batcher = make_batcher(model, max_wait_ms=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit([{"id": "first", "len": 3}]))
        assert await asyncio.to_thread(model.entered.wait, 30)  # "first" is in the model, held by the gate
        gone = asyncio.ensure_future(batcher.submit([{"id": "gone", "len": 3}]))
        kept = asyncio.ensure_future(batcher.submit([{"id": "kept", "len": 3}]))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        outputs = await asyncio.gather(first, kept)
        with pytest.raises(asyncio.CancelledError):
            await gone
        await batcher.close()
        return outputs

    outputs = asyncio.run(main())
    assert outputs == [[{"id": "first"}], [{"id": "kept"}]]
    assert "gone" not in [key for batch in model.batches for key in batch]


def test_workers_run_batches_of_one_window_at_the_same_time():
    inside = threading.Barrier(2, timeout=30)

    class TwoAtOnce(RecordingModel):
        def forward(self, features):
            inside.wait()  # both workers must be inside forward together, or this raises
            return super().forward(features)

    model = TwoAtOnce()

    async def main():
        batcher = make_batcher(model, max_batch_requests=2, workers=2)
        batcher.start()
        outputs = await batcher.submit([{"id": i, "len": 3} for i in range(4)])  # one window, two batches
        await batcher.close()
        return outputs

    assert [o["id"] for o in asyncio.run(main())] == [0, 1, 2, 3]
    assert sorted(len(b) for b in model.batches) == [2, 2]


def test_a_large_request_shares_each_window_with_a_small_one_that_arrives_later():
    gate = threading.Event()
    model = RecordingModel(gate)

    async def main():
        batcher = make_batcher(model, max_batch_requests=4)
        batcher.start()
        large = asyncio.ensure_future(batcher.submit([{"id": ("large", i), "len": 3} for i in range(40)]))
        assert await asyncio.to_thread(model.entered.wait, 30)  # the large request's first batch is in the model
        small = asyncio.ensure_future(batcher.submit([{"id": ("small", 0), "len": 3}]))
        await asyncio.sleep(0)  # the small request waits in the queue
        gate.set()
        outputs = await asyncio.gather(large, small)
        await batcher.close()
        return outputs

    large, small = asyncio.run(main())
    assert [o["id"] for o in large] == [("large", i) for i in range(40)] and small == [{"id": ("small", 0)}]
    # One batch per window (one worker), a sequence of each request in turn: the small request runs
    # in the window after the one it arrived during, not after the large request's other 36 sequences.
    assert model.batches[0] == [("large", i) for i in range(4)]
    assert model.batches[1] == [("large", 4), ("small", 0), ("large", 5), ("large", 6)]
    assert len(model.batches) == 11
