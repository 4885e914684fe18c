"""Hostile clients, one class of input after another, against one server on 127.0.0.1 (bertkit's
uvicorn server in a thread, over a fake model). Bounded: a fixed list of requests, each with a
timeout, and the server stops at the end of the module. After each class a normal client asks for
the same vector and must get it, and at the end no request has been answered with a 5xx.

The classes: one request with the most inputs the limits allow (a normal request runs in the next
window, not after it), requests over the limits (413, refused before the work they ask for),
clients that send slowly or go away mid-request, client text that cannot be encoded (lone surrogates), wrong types and values in every field (422
naming it), and abuse of HTTP itself (long request lines and headers, malformed requests and
bodies, unknown routes and methods).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading

import httpx
import pytest
from serve.fake_pipeline import FakeCrossEncoder, FakePipeline
from serve.serving import running

from bertkit.serve.app import ServeSettings, create_app
from bertkit.serve.batcher import BatchLimits
from bertkit.serve.server import MAX_HEAD_BYTES

MAX_INPUTS, MAX_TOKENS, MAX_BYTES = 64, 500, 64 * 1024
NORMAL = "the cat sat on the mat"


@pytest.fixture(scope="module")
def server():
    embedder = FakePipeline(gate=threading.Event())
    embedder.gate.set()
    models = {"emb": embedder, "clf": FakePipeline("text-classification"), "rr": FakeCrossEncoder()}
    # One sequence per batch and a whole request in one chunk: only the batcher's fair share keeps a
    # large request from running all its sequences before a later small one.
    settings = ServeSettings(limits=BatchLimits(max_batch_requests=1), max_client_batch_size=MAX_INPUTS,
                             max_inputs_per_request=MAX_INPUTS, max_request_tokens=MAX_TOKENS,
                             max_request_bytes=MAX_BYTES)
    with running(create_app({name: (lambda p=p: p) for name, p in models.items()}, settings)) as url:
        yield url, embedder
        metrics = httpx.get(f"{url}/metrics").text
    statuses = re.findall(r'bertkit_requests_total\{route="[^"]*",status="(\d+)"\}', metrics)
    assert statuses and not [s for s in statuses if s.startswith("5")], statuses


def normal_request_is_unchanged(url: str, embedder: FakePipeline) -> None:
    body = httpx.post(f"{url}/v1/embeddings", json={"input": NORMAL, "model": "emb"}, timeout=30).json()
    assert body["data"][0]["embedding"] == embedder.expected(NORMAL)
    assert httpx.get(f"{url}/health", timeout=30).status_code == 200


def assert_error(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["code"] == response.status_code
    return error


def test_a_large_request_does_not_delay_normal_ones(server):
    url, embedder = server
    large_inputs = [f"{'red ' * (i % 5)}blue" for i in range(MAX_INPUTS)]

    async def scenario():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            embedder.gate.clear()  # the model holds the large request's first batch
            embedder.entered.clear()
            large = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": large_inputs, "model": "emb"}))
            while not embedder.entered.is_set():
                await asyncio.sleep(0.005)
            normals = [asyncio.ensure_future(client.post("/v1/embeddings", json={"input": NORMAL, "model": "emb"}))
                       for _ in range(3)]
            while queued(await client.get("/metrics")) < MAX_INPUTS - 1 + 3:  # all three wait behind the large one
                await asyncio.sleep(0.005)
            embedder.gate.set()
            return await large, await asyncio.gather(*normals)

    start = len(embedder.batches)
    large, normals = asyncio.run(scenario())
    assert [d["embedding"] for d in large.json()["data"]] == [embedder.expected(t) for t in large_inputs]
    for response in normals:
        assert response.json()["data"][0]["embedding"] == embedder.expected(NORMAL)
    # One sequence a batch: the normal requests ran in the next windows, not after the 63 sequences
    # the large one still had waiting.
    normal_ids = embedder.preprocess(NORMAL)[0].input_ids
    batches = [batch[0] for batch in embedder.batches[start:]]
    assert [i for i, ids in enumerate(batches) if ids == normal_ids] == [2, 3, 4], batches[:6]
    assert len(batches) == MAX_INPUTS + 3


def queued(metrics: httpx.Response) -> float:
    return float(re.search(r'bertkit_queue_depth\{model="emb"\} (\S+)', metrics.text).group(1))


def test_requests_over_the_limits_are_refused_before_their_work(server):
    url, embedder = server
    embedder.preprocessed = 0
    error = assert_error(httpx.post(f"{url}/v1/embeddings", json={"input": ["red"] * (MAX_INPUTS + 1)}), 413)
    assert "max_inputs_per_request" in error["message"] and embedder.preprocessed == 0
    error = assert_error(httpx.post(f"{url}/predict", json={"inputs": ["red " * 12] * MAX_INPUTS}), 413)
    assert "max_request_tokens" in error["message"]
    assert embedder.preprocessed <= MAX_TOKENS // 14 + 1  # stopped at the limit: 14 tokens an input
    error = assert_error(httpx.post(f"{url}/v1/embeddings", content=json.dumps({"input": "red " * MAX_BYTES}),
                                    headers={"content-type": "application/json"}), 413)
    assert "max_request_bytes" in error["message"]

    # A body announced as 1 GB is refused from its headers, before any of it is sent (nothing is
    # held for it); one sent in chunks without a length, as soon as it is over the limit.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000000000\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")

    def chunks():
        yield b'{"input": "'
        for _ in range(MAX_BYTES // 4096 + 2):
            yield b"red " * 1024
        yield b'"}'
    assert_error(httpx.post(f"{url}/v1/embeddings", content=chunks(), headers={"content-type": "application/json"}),
                 413)
    normal_request_is_unchanged(url, embedder)


def test_clients_that_send_slowly_or_go_away_do_not_hold_the_server(server):
    url, embedder = server
    host, port = url.removeprefix("http://").split(":")
    slow = []
    try:
        for _ in range(20):  # bodies that never arrive, and request heads cut short
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000\r\n\r\n{\"input\": ")
            slow.append(sock)
            sock = socket.create_connection((host, int(port)), timeout=30)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Half: ")
            slow.append(sock)
        normal_request_is_unchanged(url, embedder)
        assert httpx.get(f"{url}/info").json()["ready"]
    finally:
        for sock in slow:
            sock.close()
    normal_request_is_unchanged(url, embedder)


def test_client_text_that_cannot_be_encoded_gets_a_json_answer(server):
    url, embedder = server
    lone = "\\ud800"  # a JSON escape: valid JSON, a str Python cannot encode as UTF-8
    bodies = [
        ("/predict", f'{{"inputs": "red", "parameters": {{"{lone}x": 1}}}}'),
        ("/tokenize", f'{{"inputs": "red", "parameters": {{"{lone}x": 1}}}}'),
        ("/predict", f'{{"inputs": "red", "parameters": {{"normalize": "{lone}"}}}}'),
        ("/predict", f'{{"inputs": "red", "model": "{lone}"}}'),
        ("/predict", f'{{"{lone}": 1}}'),
        ("/v1/embeddings", f'{{"input": "red", "model": "emb", "encoding_format": "{lone}"}}'),
        ("/v1/embeddings", f'{{"input": ["red", "{lone}"], "model": "emb"}}'),
        ("/rerank", f'{{"query": "{lone}", "texts": ["{lone}"]}}'),
        ("/predict", f'{{"inputs": "red", "model": "clf", "parameters": {{"text_pair": "{lone}"}}}}'),
    ]
    for path, body in bodies:
        response = httpx.post(f"{url}{path}", content=body.encode(), headers={"content-type": "application/json"})
        assert response.status_code < 500, (path, body, response.text)
        json.loads(response.content)  # a JSON answer, whatever it says
        if response.status_code >= 400:
            assert_error(response, response.status_code)
    response = httpx.get(f"{url}/v1/models/%ED%A0%80")  # the surrogate's UTF-8-like bytes in a URL
    assert_error(response, 404)
    normal_request_is_unchanged(url, embedder)


def test_wrong_types_and_values_are_422_naming_the_field(server):
    url, embedder = server
    cases = [
        ("/v1/embeddings", {"input": {"a": 1}}, "input"),
        ("/v1/embeddings", {"input": [1.5, 2]}, "input"),
        ("/v1/embeddings", {"input": [[-1]]}, "input"),
        ("/v1/embeddings", {"input": "red", "dimensions": 0}, "dimensions"),
        ("/v1/embeddings", {"input": "red", "truncate": "false"}, "truncate"),
        ("/embed", {"inputs": "red", "normalize": "false"}, "normalize"),
        ("/embed", {"inputs": "red", "normalize": 0}, "normalize"),
        ("/rerank", {"query": "a", "texts": []}, "texts"),
        ("/rerank", {"query": ["a"], "texts": ["b"]}, "query"),
        ("/rerank", {"query": "a", "texts": ["b"], "raw_scores": "yes"}, "raw_scores"),
        ("/predict", {"inputs": "red", "parameters": []}, "parameters"),
        ("/predict", {"inputs": "red", "parameters": {"normalize": "false"}}, "parameters.normalize"),
        ("/predict", {"inputs": ["a", "b"], "parameters": {"text_pair": "c"}}, "parameters.text_pair"),
        ("/predict", {"model": "clf", "inputs": "red", "parameters": {"top_k": -1}}, "parameters.top_k"),
        ("/predict", {"model": "clf", "inputs": "red", "parameters": {"top_k": True}}, "parameters.top_k"),
        ("/predict", {"model": "clf", "inputs": "red", "parameters": {"top_k": "2"}}, "parameters.top_k"),
        ("/predict", {"inputs": "red", "model": 3}, "model"),
        ("/tokenize", {"inputs": "red", "parameters": {"pooling": 3}}, "parameters.pooling"),
    ]
    for path, body, field in cases:
        error = assert_error(httpx.post(f"{url}{path}", json=body), 422)
        assert error["message"].startswith(f"{field}:"), (path, body, error)
    for path, body in [("/v1/embeddings", {"input": []}), ("/v1/embeddings", {"input": ""}),
                       ("/predict", {"inputs": [{"x": 1}]}), ("/predict", {"inputs": None})]:
        assert_error(httpx.post(f"{url}{path}", json=body), 400)
    normal_request_is_unchanged(url, embedder)


def test_abuse_of_http_itself_gets_json_errors(server):
    url, embedder = server
    json_headers = {"content-type": "application/json"}
    assert_error(httpx.get(f"{url}/health?" + "a" * (MAX_HEAD_BYTES + 1)), 414)
    assert_error(httpx.get(f"{url}/health", headers={"x-big": "a" * (MAX_HEAD_BYTES + 1)}), 431)
    assert_error(httpx.get(f"{url}/health", headers={f"x-{i}": "1" for i in range(2000)}), 431)
    assert_error(httpx.post(f"{url}/v1/embeddings", content=b"[" * 50_000, headers=json_headers), 400)
    assert_error(httpx.post(f"{url}/v1/embeddings", content=b'{"input": NaN}', headers=json_headers), 422)
    assert_error(httpx.post(f"{url}/v1/embeddings", content=b"\x00\x01", headers=json_headers), 400)
    assert_error(httpx.post(f"{url}/v1/embeddings", content=b'{"input": "red"}', headers={"content-type": "text/plain"}),
                 415)
    assert_error(httpx.put(f"{url}/predict", json={}), 405)
    assert_error(httpx.post(f"{url}/health"), 405)
    assert_error(httpx.get(f"{url}/../../etc/passwd"), 404)
    assert_error(httpx.get(f"{url}/v1/models/{'x' * 5000}"), 404)
    for path in ("/health", "/info"):
        assert httpx.head(f"{url}{path}").status_code == 200
    normal_request_is_unchanged(url, embedder)
