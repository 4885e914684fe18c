"""The HTTP API over a fake pipeline: shapes, errors, batching across requests, backpressure,
faults and disconnects. Real HTTP on a uvicorn thread; no assertion is about time."""

from __future__ import annotations

import asyncio
import base64
import threading

import httpx
import numpy as np
from serve.fake_pipeline import FakePipeline
from serve.serving import running

from bertkit.serve.app import ServeSettings, create_app
from bertkit.serve.batcher import BatchLimits

TEXTS = ["the cat", "a dog and a cat", "one two three four", "red", "the big old house by the tree"]


def make_app(*pipelines: tuple[str, FakePipeline], **settings):
    limits = BatchLimits(**{k: settings.pop(k) for k in ("max_batch_tokens", "max_batch_requests", "max_wait_ms")
                            if k in settings})
    return create_app({name: (lambda p=p: p) for name, p in pipelines}, ServeSettings(limits=limits, **settings))


def test_embeddings_in_openai_shape_float_and_base64():
    fake = FakePipeline()
    with running(make_app(("fake", fake))) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": TEXTS}).json()
        assert body["object"] == "list" and body["model"] == "fake"
        assert [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
        assert [d["embedding"] for d in body["data"]] == [fake.expected(t) for t in TEXTS]
        assert body["usage"]["prompt_tokens"] == sum(e[0] for e in map(fake.expected, TEXTS))
        assert body["truncated"] == []
        single = httpx.post(f"{url}/v1/embeddings", json={"input": "red", "model": "fake",
                                                          "encoding_format": "base64"}).json()
        decoded = np.frombuffer(base64.b64decode(single["data"][0]["embedding"]), dtype="<f4")
        assert decoded.tolist() == fake.expected("red")


def test_predict_tokenize_info_and_two_models_by_name():
    embedder, classifier = FakePipeline(), FakePipeline("text-classification")
    with running(make_app(("emb", embedder), ("clf", classifier))) as url:
        body = httpx.post(f"{url}/predict", json={"model": "clf", "inputs": ["red", "one two three four five"]}).json()
        assert body["task"] == "text-classification"
        assert [o["label"] for o in body["outputs"]] == ["short", "long"]
        # no model field: the first one; the pipeline's own parameters pass through
        body = httpx.post(f"{url}/predict", json={"inputs": "the cat", "parameters": {"normalize": True}}).json()
        assert body["model"] == "emb" and np.isclose(np.linalg.norm(body["outputs"]), 1.0)  # single: shaped
        tokens = httpx.post(f"{url}/tokenize", json={"inputs": ["the cat"], "model": "clf"}).json()
        assert tokens["outputs"][0][0]["tokens"] == ["[CLS]", "the", "cat", "[SEP]"]
        assert tokens["outputs"][0][0]["unknown_tokens"] == 0
        tokens = httpx.post(f"{url}/tokenize", json={"inputs": ["the 猫 cat"], "model": "clf"}).json()
        assert tokens["outputs"][0][0]["unknown_tokens"] == 1  # a word the vocabulary does not cover
        info = httpx.get(f"{url}/info").json()
        assert [(m["name"], m["task"]) for m in info["models"]] == [("emb", "feature-extraction"),
                                                                   ("clf", "text-classification")]
        assert info["models"][1]["labels"] == ["short", "long"] and info["max_batch_tokens"] > 0
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}


def test_user_mistakes_are_4xx_json_and_the_server_stays_up():
    with running(make_app(("emb", FakePipeline(max_seq_length=6)), ("clf", FakePipeline("text-classification")))) as url:
        cases = [
            (dict(json={"input": "red", "model": "nope"}), 404, "not served here; served: emb, clf"),
            (dict(content=b'{"input": ', headers={"content-type": "application/json"}), 400, "JSON"),
            (dict(json={"input": 3}), 422, "input"),
            (dict(json={"inputs": "typo"}), 422, "input"),
            (dict(json={"input": []}), 400, "empty"),
            (dict(json={"input": "red", "model": "clf"}), 400, "use POST /predict"),
            (dict(json={"input": "red", "encoding_format": "int8"}), 422, "encoding_format"),
            (dict(json={"input": "red", "dimensions": 7}), 400, "4-dimensional"),
            (dict(json={"input": ["red", "one two three four five"], "truncate": False}), 413,
             "input 1 is longer than this model's limit of 6 tokens"),
        ]
        for kwargs, status, words in cases:
            response = httpx.post(f"{url}/v1/embeddings", **kwargs)
            assert response.status_code == status, (kwargs, response.text)
            assert words in response.json()["error"]["message"], (kwargs, response.text)
        response = httpx.post(f"{url}/predict", json={"inputs": [1, 2]})
        assert response.status_code == 400 and "expected a text" in response.json()["error"]["message"]
        response = httpx.post(f"{url}/predict", json={"inputs": "red", "parameters": {"nonsense": 1}})
        assert response.status_code == 400 and "nonsense" in response.json()["error"]["message"]
        body = httpx.post(f"{url}/v1/embeddings", json={"input": ["red", "one two three four five"]}).json()
        assert body["truncated"] == [1] and body["data"][1]["embedding"][0] == 6  # cut to 6 tokens
        metrics = httpx.get(f"{url}/metrics").text
        assert 'bertkit_requests_total{route="/v1/embeddings",status="404"} 1.0' in metrics
        assert 'bertkit_requests_total{route="/v1/embeddings",status="200"} 1.0' in metrics
        assert httpx.get(f"{url}/health").status_code == 200


async def _load(url: str, n_requests: int, concurrency: int, texts: list[str]) -> list[httpx.Response]:
    """`n_requests` requests of 1-4 texts each, `concurrency` at a time."""
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(i):
            async with semaphore:
                batch = [texts[(i + j) % len(texts)] for j in range(1 + i % 4)]
                return await client.post("/v1/embeddings", json={"input": batch})
        return await asyncio.gather(*(one(i) for i in range(n_requests)))


def test_concurrent_requests_are_batched_together_and_each_gets_its_own_answers():
    fake = FakePipeline(delay=0.005)
    with running(make_app(("fake", fake), max_wait_ms=5, max_batch_requests=32)) as url:
        responses = asyncio.run(_load(url, 300, 16, TEXTS))
        metrics = httpx.get(f"{url}/metrics").text
    for i, response in enumerate(responses):
        batch = [TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 4)]
        assert response.status_code == 200
        assert [d["embedding"] for d in response.json()["data"]] == [fake.expected(t) for t in batch]
    sizes = [len(batch) for batch in fake.batches[1:]]  # [0] is the warm-up
    assert max(sizes) > 4 and max(sizes) <= 32  # sequences of several requests share batches
    assert sum(sizes) == sum(1 + i % 4 for i in range(300))
    assert "bertkit_batch_size_bucket" in metrics and "bertkit_queue_seconds_bucket" in metrics


def test_a_client_batch_above_the_limit_is_split_not_refused():
    fake = FakePipeline()
    texts = [TEXTS[i % len(TEXTS)] + " red" * (i % 3) for i in range(23)]
    with running(make_app(("fake", fake), max_client_batch_size=5)) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": texts}).json()
    assert [d["embedding"] for d in body["data"]] == [fake.expected(t) for t in texts]
    assert [len(b) for b in fake.batches[1:]] == [5, 5, 5, 5, 3]


def test_overload_gets_429_never_5xx_and_health_after():
    fake = FakePipeline(delay=0.02)
    with running(make_app(("fake", fake), max_concurrent_requests=4)) as url:
        responses = asyncio.run(_load(url, 200, 64, TEXTS))
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 429}, set(statuses)
        busy = next(r for r in responses if r.status_code == 429)
        assert "max_concurrent_requests=4" in busy.json()["error"]["message"] and busy.headers["retry-after"]
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "red"}).status_code == 200


def test_an_input_that_makes_the_model_raise_fails_alone():
    fake = FakePipeline(delay=0.01)
    with running(make_app(("fake", fake), max_wait_ms=20)) as url:
        async def mixed():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                inputs = [["red"], ["the cat", "fire"], ["one two"], ["a dog"]] * 5
                return await asyncio.gather(*(client.post("/v1/embeddings", json={"input": x}) for x in inputs))
        responses = asyncio.run(mixed())
        for i, response in enumerate(responses):
            if i % 4 == 1:
                assert response.status_code == 500
                assert response.json()["error"]["type"] == "model_error"
                assert "cannot take 'fire'" in response.json()["error"]["message"]
            else:
                assert response.status_code == 200, response.text
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "red"}).status_code == 200


def test_a_disconnected_clients_work_is_dropped_if_not_started():
    gate = threading.Event()
    fake = FakePipeline(gate=gate)
    app = make_app(("fake", fake))
    gate.set()  # let the warm-up through
    with running(app) as url:
        gate.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                holding = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": "red"}))
                while len(fake.batches) < 1 or app.state.serve.in_flight < 1:
                    await asyncio.sleep(0.01)
                # the model is busy with "red" (held by the gate): this request waits in the queue
                try:
                    await client.post("/v1/embeddings", json={"input": "the big old house"}, timeout=0.3)
                except httpx.TimeoutException:
                    pass
                while app.state.serve.in_flight > 1:
                    await asyncio.sleep(0.01)  # the server saw the disconnect
                gate.set()
                return await holding

        held = asyncio.run(scenario())
        assert held.status_code == 200
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "the cat"}).status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
    house = fake.tokenizer.vocab["house"]
    assert all(house not in ids for batch in fake.batches for ids in batch)
    assert 'status="499"' in metrics
