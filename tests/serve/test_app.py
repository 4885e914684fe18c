"""The HTTP API over a fake pipeline: shapes, errors, batching across requests, backpressure,
faults and disconnects. Real HTTP on a uvicorn thread; no assertion is about time."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import threading

import httpx
import numpy as np
from serve.fake_pipeline import FakeCrossEncoder, FakePipeline
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
        assert response.status_code == 422
        assert response.json()["error"]["message"] == ("parameters.nonsense: unknown field; accepted: pooling, "
                                                       "normalize, text_pair (a feature-extraction model)")
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
        fake.entered.clear()

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                holding = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": "red"}))
                while not fake.entered.is_set():
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


def test_clients_of_openai_and_tei_routes():
    fake, rerank = FakePipeline(max_seq_length=8), FakeCrossEncoder()
    with running(make_app(("emb", fake), ("rr", rerank))) as url:
        models = httpx.get(f"{url}/v1/models").json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["emb", "rr"]
        assert {m["object"] for m in models["data"]} == {"model"} and models["data"][0]["owned_by"] == "bertkit"
        assert httpx.get(f"{url}/v1/models/rr").json()["id"] == "rr"
        assert httpx.get(f"{url}/v1/models/nope").status_code == 404

        # word-piece ids, as OpenAI's API takes them: with or without [CLS] / [SEP], one or a list
        ids = fake.tokenizer.text_to_ids("the cat")
        cls, sep = fake.tokenizer.cls_token_id, fake.tokenizer.sep_token_id
        for body, want in [({"input": ids}, ["the cat"]), ({"input": [ids, [cls, *ids, sep]]}, ["the cat"] * 2)]:
            data = httpx.post(f"{url}/v1/embeddings", json=body).json()["data"]
            assert [d["embedding"] for d in data] == [fake.expected(t) for t in want]
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [[5, 99999]]})
        assert response.status_code == 400 and "token id 99999 is not in the model's vocabulary" in response.text
        for body, where in [({"input": ""}, "input is an empty text"), ({"input": ["red", ""]}, "input[1] is an empty text")]:
            response = httpx.post(f"{url}/v1/embeddings", json=body)
            assert response.status_code == 400 and where in response.json()["error"]["message"]

        # TEI's /embed: a list of vectors, normalised by default, too-long inputs refused unless truncate
        vectors = httpx.post(f"{url}/embed", json={"inputs": ["red", "the cat"]}).json()
        assert np.allclose(vectors, [np.array(fake.expected(t)) / np.linalg.norm(fake.expected(t))
                                     for t in ["red", "the cat"]])
        raw = httpx.post(f"{url}/embed", json={"inputs": "red", "normalize": False}).json()
        assert raw == [fake.expected("red")]
        long_text = "one two three four five six seven"
        assert httpx.post(f"{url}/embed", json={"inputs": long_text}).status_code == 413
        assert httpx.post(f"{url}/embed", json={"inputs": long_text, "truncate": True}).status_code == 200

        # TEI's /rerank on the cross-encoder (chosen without a name: the one model that fits)
        texts = ["a red car", "the old cat", "the cat and the dog", "blue water"]
        ranked = httpx.post(f"{url}/rerank", json={"query": "the cat", "texts": texts, "return_text": True}).json()
        logits = [rerank.score("the cat", t) for t in texts]
        assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -logits[i])
        assert [r["text"] for r in ranked] == [texts[r["index"]] for r in ranked]
        assert np.allclose([r["score"] for r in ranked], [1 / (1 + np.exp(-logits[r["index"]])) for r in ranked])
        raw = httpx.post(f"{url}/rerank", json={"query": "the cat", "texts": texts, "raw_scores": True}).json()
        assert [r["score"] for r in raw] == sorted(logits, reverse=True) and "text" not in raw[0]
        response = httpx.post(f"{url}/rerank", json={"query": "a", "texts": ["b"], "model": "emb"})
        assert response.status_code == 400 and "not a cross-encoder" in response.json()["error"]["message"]
        response = httpx.post(f"{url}/embed", json={"inputs": "a", "model": "rr"})
        assert response.status_code == 400 and "not an embedding model" in response.json()["error"]["message"]


def test_a_single_model_server_answers_to_any_model_name():
    fake = FakePipeline()
    with running(make_app(("fake", fake))) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": "red", "model": "text-embedding-ada-002"}).json()
        assert body["model"] == "fake" and body["data"][0]["embedding"] == fake.expected("red")
        assert httpx.post(f"{url}/predict", json={"inputs": "red", "model": "other"}).status_code == 404


def test_parameters_are_checked_by_type_and_range_with_the_field_named():
    with running(make_app(("emb", FakePipeline()), ("clf", FakePipeline("text-classification")))) as url:
        cases = [
            ({"inputs": "red", "parameters": {"normalize": "false"}}, "parameters.normalize: input should be a valid "
                                                                      "boolean, got 'false'"),
            ({"inputs": "red", "parameters": {"pooling": "sum"}}, "parameters.pooling: input should be 'cls', 'mean' or "
                                                                  "'max', got 'sum'"),
            ({"inputs": ["red", "cat"], "parameters": {"text_pair": "dog"}}, "parameters.text_pair: a second text goes "
                                                                              "with one input"),
            ({"model": "clf", "inputs": "red", "parameters": {"top_k": -1}}, "parameters.top_k: input should be greater "
                                                                            "than or equal to 1, got -1"),
            ({"model": "clf", "inputs": "red", "parameters": {"top_k": 0}}, "parameters.top_k"),
            ({"model": "clf", "inputs": "red", "parameters": {"top_k": 1.0}}, "parameters.top_k: input should be a valid "
                                                                             "integer, got 1.0"),
            ({"model": "clf", "inputs": "red", "parameters": {"text_pair": 3}}, "parameters.text_pair: expected a text "
                                                                               "(for one input) or a list of texts"),
            ({"model": "clf", "inputs": "red", "parameters": {"top": 2}}, "parameters.top: unknown field (did you mean "
                                                                         "'top_k'?); accepted: top_k, text_pair"),
            ({"input": "red"}, "input: unknown field (did you mean 'inputs'?)"),
            ({"inputs": "red", "truncate": "yes"}, "truncate: input should be a valid boolean, got 'yes'"),
        ]
        for body, message in cases:
            response = httpx.post(f"{url}/predict", json=body)
            assert response.status_code == 422, (body, response.text)
            assert message in response.json()["error"]["message"], (body, response.text)
        response = httpx.post(f"{url}/v1/embeddings", json={"input": 3})
        assert response.json()["error"]["message"] == (
            "input: expected a non-empty text, a list of them, or word-piece ids (a list of ints, or a list of such "
            "lists), got 3")
        schema = httpx.get(f"{url}/openapi.json").json()
        assert {"EmbeddingsRequest", "EmbedRequest", "RerankRequest", "PredictRequest"} <= set(schema["components"]["schemas"])
        parameters = schema["components"]["schemas"]["PredictRequest"]["properties"]["parameters"]
        from bertkit.tasks import registry  # every registered task's declared parameters, by its name

        assert [p["title"] for p in parameters["anyOf"]] == [spec.name for spec in registry.tasks()]


def test_every_error_is_json_in_one_shape():
    with running(make_app(("fake", FakePipeline()), max_request_bytes=1000)) as url:
        cases = [
            (httpx.get(f"{url}/nope"), 404, "no route GET /nope; routes: POST /v1/embeddings, POST /embed, POST /rerank"),
            (httpx.get(f"{url}/predict"), 405, "GET is not allowed on /predict; allowed: POST"),
            (httpx.delete(f"{url}/health"), 405, "allowed: GET, HEAD"),
            (httpx.post(f"{url}/v1/embeddings", content=b'{"input":\n  ["red",]}',
                        headers={"content-type": "application/json"}), 400, "malformed JSON at line 2 column 10"),
            (httpx.post(f"{url}/v1/embeddings", content=b'{"input": "\xffred"}', headers={"content-type": "application/json"}),
             400, "the body is not JSON that can be read: UnicodeDecodeError"),
            (httpx.post(f"{url}/v1/embeddings", content=b'{"input": "red"}'), 415, "this request has no Content-Type"),
            (httpx.post(f"{url}/v1/embeddings", data={"input": "red"}), 415,
             "Content-Type 'application/x-www-form-urlencoded'"),
            (httpx.post(f"{url}/v1/embeddings", json={"input": "red " * 300}), 413,
             "takes at most 1000 (max_request_bytes)"),
            (httpx.post(f"{url}/v1/embeddings", json=[1, 2]), 422, "body: input should be a valid dictionary"),
        ]
        for response, status, words in cases:
            assert response.status_code == status, (words, response.text)
            assert response.headers["content-type"] == "application/json", words
            error = response.json()["error"]
            assert set(error) == {"message", "type", "code"} and error["code"] == status, error
            assert words in error["message"], (words, error)
        for path in ("/health", "/info"):
            head = httpx.head(f"{url}{path}")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == httpx.get(f"{url}{path}").headers["content-length"]


def test_a_request_over_its_cost_ceiling_is_413_naming_the_limit():
    fake = FakePipeline()
    with running(make_app(("fake", fake), max_inputs_per_request=10, max_request_tokens=50)) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": ["red"] * 11})
        assert response.status_code == 413
        assert response.json()["error"]["message"].startswith("input holds 11 inputs; this server takes at most 10 "
                                                              "per request (max_inputs_per_request)")
        fake.preprocessed = 0
        response = httpx.post(f"{url}/predict", json={"inputs": ["one two three four five six"] * 10})
        assert response.status_code == 413 and response.json()["error"]["type"] == "too_many_tokens"
        assert "more than 50 tokens (max_request_tokens; over it at input 6)" in response.json()["error"]["message"]
        assert fake.preprocessed == 7  # refused as soon as it was over, not after all ten
        assert httpx.post(f"{url}/v1/embeddings", json={"input": ["red"] * 10}).status_code == 200
        info = httpx.get(f"{url}/info").json()
        assert (info["max_inputs_per_request"], info["max_request_tokens"]) == (10, 50)


def test_an_access_log_line_per_request_unless_turned_off(caplog):
    fake = FakePipeline()
    with caplog.at_level(logging.INFO, logger="bertkit.serve.access"):
        with running(make_app(("fake", fake))) as url:
            httpx.post(f"{url}/v1/embeddings", json={"input": ["red", "the cat"]})
            httpx.get(f"{url}/nope")
        lines = [r.getMessage() for r in caplog.records if r.name == "bertkit.serve.access"]
        assert any(re.search(r"POST /v1/embeddings 200 inputs=2 tokens=7 \d+\.\dms$", line) for line in lines), lines
        assert any(re.search(r"GET /nope 404 inputs=- tokens=- ", line) for line in lines), lines
        caplog.clear()
        with running(make_app(("fake", fake), access_log=False)) as url:
            httpx.post(f"{url}/v1/embeddings", json={"input": "red"})
        assert not [r for r in caplog.records if r.name == "bertkit.serve.access"]
