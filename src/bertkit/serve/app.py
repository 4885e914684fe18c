"""The HTTP API: routes turn requests into pipeline items and features, the batcher runs them.

    POST /v1/embeddings   OpenAI's shape: {"input": text | [text] | ids | [ids], "model", "encoding_format"}
    POST /embed           text-embeddings-inference's: {"inputs", "normalize", "truncate"} -> [[float]]
    POST /rerank          text-embeddings-inference's, for a cross-encoder: {"query", "texts"} -> [{"index", "score"}]
    POST /predict         {"inputs": the pipeline's first argument, "parameters": its other arguments and
                          options, "model", "truncate"} -> {"outputs": what the pipeline returns, ...}
    POST /tokenize        {"inputs", "parameters", "model"}: the features each input becomes (windows for NER/QA)
    GET  /v1/models       OpenAI's list of the served models
    GET  /health          200 once every model is loaded and warmed up, 503 before (HEAD too)
    GET  /info            models, tasks, labels, lengths, batching and request limits (HEAD too)
    GET  /metrics         Prometheus

Every request body is a declared pydantic model (schemas.py; documented on /docs), checked
strictly: a body that does not fit is a 422 naming the field. A handler then checks the request's
cost against the limits (inputs, tokens; the body's bytes are checked before it is read), 413
beyond them, preprocesses every item off the event loop, hands the features to the model's batcher
in chunks of `max_client_batch_size` items, and postprocesses each item's outputs. Every error,
down to a 404 or an unparsable body, is {"error": {"message", "type", "code"}}; no client input
makes a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from bertkit.errors import BertkitError
from bertkit.serve.batcher import Batcher, BatchLimits
from bertkit.serve.metrics import ServeMetrics
from bertkit.serve.server import MAX_HEAD_BYTES
from bertkit.serve.schemas import (EmbeddingsRequest, EmbedRequest, PredictRequest, RerankRequest, TokenizeRequest,
                                   brief, check_parameters, fields_of, parameters_model, validation_message)
from bertkit.tasks.pipeline import Feature, Pipeline

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("bertkit.serve.access")

@dataclass
class ServeSettings:
    limits: BatchLimits = field(default_factory=BatchLimits)
    max_concurrent_requests: int = 512  # model requests in flight; beyond: 429 at once
    max_client_batch_size: int = 32  # inputs handed to the batcher at once from one request
    # One request's cost ceiling, 413 beyond it. OpenAI's embeddings API takes at most 2,048 inputs
    # and 300,000 tokens in a request; the body limit bounds what is read and parsed before either.
    max_inputs_per_request: int = 2048
    max_request_tokens: int = 300_000
    max_request_bytes: int = 8 * 1024 * 1024
    access_log: bool = True  # one log line per request


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class JsonResponse(JSONResponse):
    """Pipeline outputs may hold numpy scalars and arrays. Text from the client (a lone surrogate
    is valid JSON: "\\ud800") is written back as JSON's own escape, so no message fails to encode."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, default=_jsonable, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")  # only a surrogate can fail: "\udXXX", a JSON escape


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


@dataclass
class ModelSlot:
    name: str
    load: Callable[[], Pipeline]  # -> a bertkit pipeline: the interface bertkit.tasks.pipeline declares
    pipeline: Pipeline | None = None
    batcher: Batcher | None = None


def _is_embedder(p: Pipeline) -> bool:
    return p.embeddings


def _is_cross_encoder(p: Pipeline) -> bool:
    return p.cross_encoder


class ServerState:
    def __init__(self, loaders: dict[str, Callable[[], Any]], settings: ServeSettings):
        if not loaders:
            raise ValueError("serve at least one model")
        self.slots = {name: ModelSlot(name, load) for name, load in loaders.items()}
        self.default = next(iter(self.slots))
        self.settings = settings
        self.metrics = ServeMetrics()
        self.ready = False
        self.load_error: str | None = None
        self.in_flight = 0
        self.accepted = 0  # model requests admitted, and answered: equal after a drain
        self.answered = 0
        self.created = int(time.time())

    async def load(self) -> None:
        try:
            for slot in self.slots.values():
                slot.pipeline = await asyncio.to_thread(slot.load)
                p = slot.pipeline
                slot.batcher = Batcher(slot.name, p.forward, p.num_tokens, self.settings.limits, self.metrics)
                slot.batcher.start()
                call = _prepare(p, p.warmup_input, {}, True, self.settings)
                await slot.batcher.submit([f for feats in call.features for f in feats])
                logger.info("model %s ready: %s, max_seq_length %d", slot.name, p.task, p.max_seq_length)
            self.ready = True
        except Exception as err:  # noqa: BLE001 - reported by /health and the log, not a crash
            self.load_error = f"{type(err).__name__}: {err}"
            logger.error("loading the models failed: %s", self.load_error)

    async def close(self) -> None:
        for slot in self.slots.values():
            if slot.batcher is not None:
                await slot.batcher.close()
        logger.info("drained: %d model requests accepted, %d answered", self.accepted, self.answered)

    def slot(self, name: str | None, fits: Callable[[Any], bool] | None = None, kind: str = "", hint: str = "") -> ModelSlot:
        """The model `name` (None: the default, or else the first served model that `fits`)."""
        if not self.ready:
            raise ApiError(503, self.load_error or "the models are loading; see GET /health", "not_ready")
        if name is not None:
            slot = self.slots.get(name)
            if slot is None:
                raise self.not_served(name)
            if fits is not None and not fits(slot.pipeline):
                raise ApiError(400, f"model {slot.name!r} is a {slot.pipeline.task} model, not {kind}{hint}")
            return slot
        for slot in (self.slots[self.default], *self.slots.values()):
            if fits is None or fits(slot.pipeline):
                return slot
        served = ", ".join(f"{s.name} ({s.pipeline.task})" for s in self.slots.values())
        raise ApiError(400, f"none of the served models is {kind} (served: {served}){hint}")

    def not_served(self, name: str) -> ApiError:
        return ApiError(404, f"model {brief(name)} is not served here; served: {', '.join(self.slots)}",
                        "model_not_found")

    @contextlib.contextmanager
    def admission(self):
        if self.in_flight >= self.settings.max_concurrent_requests:
            raise ApiError(429, f"server busy: {self.in_flight} requests in flight (max_concurrent_requests="
                                f"{self.settings.max_concurrent_requests}); retry later", "overloaded")
        self.in_flight += 1
        self.accepted += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.answered += 1


@dataclass
class _Call:
    """One request's work: its items, each item's features, and the pipeline options of the call."""

    single: bool  # a single input (not a list): the answer is shaped as the pipeline shapes it
    items: list
    features: list[list]
    options: dict
    tokens: int = 0  # the features' tokens, as the model runs them

    @property
    def truncated(self) -> list[int]:
        """The items cut to the model's length."""
        return [i for i, feats in enumerate(self.features) if any(f.truncated for f in feats)]


def _check_count(count: int, settings: ServeSettings, field: str) -> None:
    if count > settings.max_inputs_per_request:
        raise ApiError(413, f"{field} holds {count} inputs; this server takes at most {settings.max_inputs_per_request} "
                            f"per request (max_inputs_per_request): split them over several requests",
                       "too_many_inputs")


def _featurize(p, items: list, make: Callable[[Any], list], truncate: bool, settings: ServeSettings,
               field: str) -> tuple[list[list], int]:
    """Each item's features, refusing (413) as soon as the request is over a limit, so that
    a hostile request costs no more than the limits allow."""
    features, tokens = [], 0
    for i, item in enumerate(items):
        feats = make(item)
        if not feats:  # e.g. a question with an empty context: no window to run
            raise ApiError(400, f"{field} {i} gives the model nothing to read (an empty text?)")
        if not truncate and any(f.truncated for f in feats):
            raise ApiError(413, f"{field} {i} is longer than this model's limit of {p.max_seq_length} tokens "
                                f"(max_seq_length); send truncate=true to cut it, or shorten it", "input_too_long")
        tokens += sum(p.num_tokens(f) for f in feats)
        if tokens > settings.max_request_tokens:
            raise ApiError(413, f"{field} comes to more than {settings.max_request_tokens} tokens "
                                f"(max_request_tokens; over it at input {i}): send fewer or shorter inputs per request",
                           "too_many_tokens")
        features.append(feats)
    return features, tokens


def _prepare(p, inputs: Any, parameters: dict, truncate: bool, settings: ServeSettings, field: str = "inputs") -> _Call:
    """Validate and preprocess everything before any model work; the pipeline's complaints about
    the inputs are the client's to fix (400), a request over a limit is 413. `field` is the body's
    name for the inputs, so messages name what the client sent."""
    if isinstance(inputs, list) and not inputs:
        raise ApiError(400, f"{field} is empty: send one input or a non-empty list")
    if isinstance(inputs, list):
        _check_count(len(inputs), settings, field)
    try:
        # As the pipeline's own __call__: its options (top_k, normalize, ...) go to pre/postprocessing,
        # the other keywords (text_pair, context, choices, ...) to parse.
        options, keywords = p.split_options(parameters)
        single, items = p.parse(**keywords) if inputs is None else p.parse(inputs, **keywords)
        _check_count(len(items), settings, field)
        p.check_vocabulary(items)  # once per model: the vocabulary does not cover the inputs' language
        features, tokens = _featurize(p, items, lambda item: p.preprocess(item, **options), truncate, settings, field)
    except (BertkitError, ValueError, TypeError) as err:
        raise ApiError(400, f"invalid {field} for a {p.task} model: {err}") from err
    return _Call(single, items, features, options, tokens)


def _prepare_ids(p, inputs: list, options: dict, truncate: bool, settings: ServeSettings, field: str) -> _Call:
    """Word-piece ids (OpenAI's token input), for an embedding model: [CLS] and [SEP] are added
    unless the ids hold them already (as /tokenize gives them)."""
    single = not isinstance(inputs[0], list)
    rows = [inputs] if single else inputs
    _check_count(len(rows), settings, field)
    tokenizer, size = p.tokenizer, p.config.vocab_size
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id

    def make(i_row):
        i, row = i_row
        bad = next((t for t in row if t >= size), None)
        if bad is not None:
            raise ApiError(400, f"{field}{'' if single else f' {i}'}: token id {bad} is not in the model's vocabulary "
                                f"(ids 0 to {size - 1})")
        start, end = (1 if row[0] == cls else 0), (len(row) - 1 if len(row) > 1 and row[-1] == sep else len(row))
        ids = row[start:end]
        room = p.max_seq_length - 2
        # The pooling travels with the feature, as the pipeline's preprocess does it: a batch mixes calls.
        ids = [cls, *ids[:room], sep]
        return [Feature(ids, [0] * len(ids), meta=options.get("pooling"), truncated=end - start > room)]

    features, tokens = _featurize(p, list(enumerate(rows)), make, truncate, settings, field)
    return _Call(single, [None] * len(rows), features, options, tokens)


async def _run(state: ServerState, slot: ModelSlot, call: _Call) -> list:
    """The postprocessed answer of every item; the items go to the batcher in client-batch chunks, and
    the batcher gives every request a fair share of each window, so one huge request does not hold
    the model."""
    p, chunk = slot.pipeline, state.settings.max_client_batch_size
    results = []
    for start in range(0, len(call.items), chunk):
        chunk_features = call.features[start:start + chunk]
        try:
            outputs = await slot.batcher.submit([f for feats in chunk_features for f in feats])
        except BertkitError as err:  # the pipeline refused these inputs
            raise ApiError(400, f"invalid inputs for a {p.task} model: {err}") from err
        except Exception as err:  # noqa: BLE001 - the model raised on this request's inputs
            raise ApiError(500, f"the model failed on this request: {type(err).__name__}: {err}",
                           "model_error") from err
        at = 0
        for item, feats in zip(call.items[start:start + chunk], chunk_features):
            try:
                results.append(p.postprocess(item, feats, outputs[at:at + len(feats)], **call.options))
            except (BertkitError, ValueError, TypeError) as err:
                raise ApiError(400, f"invalid parameters for a {p.task} model: {err}") from err
            at += len(feats)
    return results


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _serve_request(state: ServerState, request: Request, handler) -> Response:
    """Admit (or 429), run `handler()`, and drop its queued work if the client goes away first."""
    try:
        with state.admission():
            work = asyncio.ensure_future(handler())
            watch = asyncio.ensure_future(_until_disconnected(request))
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            watch.cancel()
            if not work.done():
                work.cancel()  # the batcher drops the features that have not started
                await asyncio.gather(work, return_exceptions=True)
                return Response(status_code=499)  # nobody reads it: the status is for the metrics
            return work.result()
    except ApiError as err:
        headers = {"Retry-After": "1"} if err.status == 429 else None
        return error_response(err.status, err.message, err.kind, headers)


def _account(request: Request, call: _Call) -> None:
    """What the access log line says about the request's size."""
    request.state.inputs, request.state.tokens = len(call.items), call.tokens


async def _respond(content: Any) -> JsonResponse:
    # Off the event loop: a 2,048-vector answer takes a while to render.
    return await asyncio.to_thread(JsonResponse, content)


_JSON_TYPES = ("application/json",)
_CLOSE = {"Connection": "close"}  # a client refused for its size may not have sent all it meant to


class _Gate:
    """Below the routes: the body limit and Content-Type check (before the body is read), the
    metrics by route and status (unknown paths share one label, to bound cardinality), and the
    access log line."""

    def __init__(self, app, state: ServerState, routes: set[str], body_routes: set[str]):
        self.app, self.state, self.routes, self.body_routes = app, state, routes, body_routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.routes else "other"
        status = [500]
        started = time.perf_counter()

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = _oversized_head(scope)
            if refusal is not None:
                return await refusal(scope, receive, send_and_record)
            if scope["method"] == "POST" and route in self.body_routes:
                refusal, receive = await self._read_body(scope, receive)
                if refusal is not None:
                    return await refusal(scope, receive, send_and_record)
            await self.app(scope, receive, send_and_record)
        finally:
            seconds = time.perf_counter() - started
            self.state.metrics.requests.labels(route, str(status[0])).inc()
            self.state.metrics.request_seconds.labels(route).observe(seconds)
            if self.state.settings.access_log:
                client = scope.get("client") or ("-", 0)
                extra = scope.get("state") or {}
                access_logger.info("%s:%s %s %s %d inputs=%s tokens=%s %.1fms", client[0], client[1], scope["method"],
                                   route if route != "other" else scope["path"][:100], status[0],
                                   extra.get("inputs", "-"), extra.get("tokens", "-"), seconds * 1000)

    async def _read_body(self, scope, receive):
        """(a refusal or None, a receive that replays the body): the body is read here, at most
        max_request_bytes of it."""
        limit = self.state.settings.max_request_bytes
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in _JSON_TYPES and not kind.endswith("+json"):
            got = f"Content-Type {brief(kind)}" if kind else "no Content-Type"
            return error_response(415, f"the body must be JSON sent with Content-Type: application/json; this request "
                                       f"has {got} (curl: add -H 'Content-Type: application/json')",
                                  "unsupported_media_type"), receive
        length = headers.get("content-length", "")  # the HTTP parser has refused one that is not a number
        if length.isdigit() and int(length) > limit:
            return error_response(413, f"the request body is {length} bytes; this server takes at most {limit} "
                                       f"(max_request_bytes)", "request_too_large", _CLOSE), receive
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app sees it
                return None, receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return error_response(413, f"the request body is over {limit} bytes (max_request_bytes)",
                                      "request_too_large", _CLOSE), receive
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay


def _oversized_head(scope) -> JsonResponse | None:
    """414 / 431 for a request head over MAX_HEAD_BYTES that the HTTP parser let through (it bounds
    only a head still arriving)."""
    target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
    if target > MAX_HEAD_BYTES:
        return error_response(414, f"the request line is over {MAX_HEAD_BYTES} bytes", "uri_too_long", _CLOSE)
    if sum(len(k) + len(v) + 4 for k, v in scope["headers"]) > MAX_HEAD_BYTES:
        return error_response(431, f"the request headers are over {MAX_HEAD_BYTES} bytes", "headers_too_large", _CLOSE)
    return None


def create_app(loaders: dict[str, Callable[[], Any]], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving `loaders` (name -> a function returning a pipeline); the first is the default
    model. Models load in the background after start-up, so /health can say 503 meanwhile."""
    state = ServerState(loaders, settings or ServeSettings())
    settings = state.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.ensure_future(state.load())
        yield
        await loading
        await state.close()

    app = FastAPI(title="bertkit serve", lifespan=lifespan, default_response_class=JsonResponse)
    app.state.serve = state
    bodies = {"/v1/embeddings": EmbeddingsRequest, "/embed": EmbedRequest, "/rerank": RerankRequest,
              "/predict": PredictRequest, "/tokenize": TokenizeRequest}

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        errors = err.errors()
        if errors and errors[0]["type"] == "json_invalid":
            text = (await request.body()).decode("utf-8", "replace")
            position = errors[0]["loc"][-1]
            line = text.count("\n", 0, position) + 1
            column = position - (text.rfind("\n", 0, position) + 1) + 1
            return error_response(400, f"malformed JSON at line {line} column {column} (character {position}): "
                                       f"{errors[0]['ctx']['error']}", "invalid_json")
        model = bodies.get(request.url.path)
        message = validation_message(errors, fields_of(model) if model else {})
        return error_response(422, message, "invalid_request_error")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        if err.status_code == 404:
            served = ", ".join(f"{method} {route.path}" for route in app.routes if route.path in routes
                               for method in sorted(route.methods - {"HEAD"}))
            message = f"no route {request.method} {request.url.path[:100]}; routes: {served} (see /docs)"
            return error_response(404, message, "not_found")
        if err.status_code == 405:
            # Starlette's Allow names the first route of the path only (GET, where HEAD is another)
            methods = {m for route in app.routes if getattr(route, "path", None) == request.url.path
                       for m in route.methods}
            allowed = ", ".join(sorted(methods)) or (err.headers or {}).get("Allow", "")
            return error_response(405, f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}",
                                  "method_not_allowed", {"Allow": allowed})
        if err.status_code == 400 and err.__cause__ is not None:  # FastAPI could not read the body as JSON
            cause = err.__cause__
            return error_response(400, f"the body is not JSON that can be read: {type(cause).__name__}: {cause}",
                                  "invalid_json")
        return error_response(err.status_code, str(err.detail), "http_error", err.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.kind)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        logger.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}: {err}", "internal_error")

    async def embed(request: Request, slot: ModelSlot, inputs, field: str, truncate: bool,
                    normalize: bool | None) -> tuple[list, _Call]:
        """The vectors of texts or of word-piece ids (the embedding routes' `input`/`inputs`)."""
        p = slot.pipeline
        parameters = {} if normalize is None else {"normalize": normalize}
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not texts or isinstance(texts[0], str):
            empty = next((i for i, text in enumerate(texts) if not text), None)
            if empty is not None:
                where = field if isinstance(inputs, str) else f"{field}[{empty}]"
                raise ApiError(400, f"{where} is an empty text: every input needs at least one character "
                                    f"(OpenAI's API refuses it too)")
            call = await asyncio.to_thread(_prepare, p, inputs, parameters, truncate, settings, field)
        else:
            call = await asyncio.to_thread(_prepare_ids, p, inputs, {**p.options, **parameters}, truncate, settings,
                                           field)
        _account(request, call)
        return await _run(state, slot, call), call

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request):
        async def handle():
            # A single model answers whatever the client calls it: OpenAI clients send their own
            # default name (text-embedding-ada-002); with several, the name chooses.
            name = None if len(state.slots) == 1 else body.model
            slot = state.slot(name, _is_embedder, "an embedding model", "; use POST /predict")
            vectors, call = await embed(request, slot, body.input, "input", body.truncate, None)
            if body.dimensions is not None and body.dimensions != len(vectors[0]):
                raise ApiError(400, f"dimensions={body.dimensions}: model {slot.name!r} gives "
                                    f"{len(vectors[0])}-dimensional vectors only")
            data = [{"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
                    for i, vector in enumerate(vectors)]
            return await _respond({"object": "list", "data": data, "model": slot.name,
                                   "usage": {"prompt_tokens": call.tokens, "total_tokens": call.tokens},
                                   "truncated": call.truncated})
        return await _serve_request(state, request, handle)

    @app.post("/embed")
    async def embed_tei(body: EmbedRequest, request: Request):
        async def handle():
            slot = state.slot(body.model, _is_embedder, "an embedding model", "; use POST /predict")
            vectors, _ = await embed(request, slot, body.inputs, "inputs", body.truncate, body.normalize)
            return await _respond(vectors)
        return await _serve_request(state, request, handle)

    @app.post("/rerank")
    async def rerank(body: RerankRequest, request: Request):
        async def handle():
            slot = state.slot(body.model, _is_cross_encoder,
                              "a cross-encoder (a text-classification model with one score per pair)")
            pairs = [[body.query, text] for text in body.texts]
            call = await asyncio.to_thread(_prepare, slot.pipeline, pairs, {}, body.truncate, settings, "texts")
            _account(request, call)
            logits = [answer["score"] for answer in await _run(state, slot, call)]
            scores = logits if body.raw_scores else [_sigmoid(x) for x in logits]
            ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
            return await _respond([{"index": i, "score": scores[i], **({"text": body.texts[i]} if body.return_text else {})}
                                   for i in ranked])
        return await _serve_request(state, request, handle)

    def task_parameters(p, parameters: dict, inputs) -> dict:
        try:
            return check_parameters(p, parameters, inputs)
        except ValidationError as err:
            fields = fields_of(parameters_model(p.parameters))
            raise ApiError(422, f"{validation_message(err.errors(), fields, ('parameters',))} "
                                f"(a {p.task} model)") from None
        except BertkitError as err:  # the pipeline's: the parameters do not go with these inputs
            raise ApiError(422, f"parameters.{err}") from None

    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request):
        async def handle():
            slot = state.slot(body.model)
            p = slot.pipeline
            parameters = task_parameters(p, body.parameters, body.inputs)
            call = await asyncio.to_thread(_prepare, p, body.inputs, parameters, body.truncate, settings)
            _account(request, call)
            answers = await _run(state, slot, call)
            return await _respond({"model": slot.name, "task": p.task, "outputs": p.shape_output(call.single, answers),
                                   "usage": {"prompt_tokens": call.tokens}, "truncated": call.truncated})
        return await _serve_request(state, request, handle)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest, request: Request):
        slot = state.slot(body.model)
        p = slot.pipeline
        parameters = task_parameters(p, body.parameters, body.inputs)
        call = await asyncio.to_thread(_prepare, p, body.inputs, parameters, True, settings)
        _account(request, call)
        return await _respond({"model": slot.name, "truncated": call.truncated, "outputs": [
            [{"input_ids": f.input_ids, "token_type_ids": f.token_type_ids, "tokens": _tokens(p.tokenizer, f.input_ids),
              "unknown_tokens": p.unknown_tokens(f)} for f in feats] for feats in call.features]})

    @app.get("/v1/models")
    async def models():
        return JsonResponse({"object": "list", "data": [_openai_model(state, name) for name in state.slots]})

    @app.get("/v1/models/{name}")
    async def model(name: str):
        if name not in state.slots:
            raise state.not_served(name)
        return JsonResponse(_openai_model(state, name))

    # HEAD as GET: load balancers health-check with either.
    @app.head("/health", include_in_schema=False)
    @app.get("/health")
    async def health():
        if state.ready:
            return JsonResponse({"status": "ok"})
        status = "failed" if state.load_error else "loading"
        return JsonResponse({"status": status, "error": state.load_error}, 503)

    @app.head("/info", include_in_schema=False)
    @app.get("/info")
    async def info():
        limits = state.settings.limits
        return JsonResponse({
            "ready": state.ready,
            "pid": os.getpid(),  # which replica answered, behind a load balancer
            "default_model": state.default,
            "models": [_model_info(slot) for slot in state.slots.values()],
            "max_batch_tokens": limits.max_batch_tokens, "max_batch_requests": limits.max_batch_requests,
            "max_wait_ms": limits.max_wait_ms, "workers": limits.workers,
            "max_concurrent_requests": settings.max_concurrent_requests,
            "max_client_batch_size": settings.max_client_batch_size,
            "max_inputs_per_request": settings.max_inputs_per_request,
            "max_request_tokens": settings.max_request_tokens, "max_request_bytes": settings.max_request_bytes})

    @app.head("/metrics", include_in_schema=False)
    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    routes = {"/v1/embeddings", "/embed", "/rerank", "/predict", "/tokenize", "/v1/models", "/health", "/info",
              "/metrics"}
    app.add_middleware(_Gate, state=state, routes=routes, body_routes=set(bodies))
    return app


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def _openai_model(state: ServerState, name: str) -> dict:
    return {"id": name, "object": "model", "created": state.created, "owned_by": "bertkit"}


def _encode(vector, encoding_format: str):
    if encoding_format == "base64":  # OpenAI's: little-endian float32 bytes
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def _tokens(tokenizer, ids: list) -> list:
    if ids and isinstance(ids[0], list):  # multiple choice: one row per choice
        return [tokenizer.convert_ids_to_tokens(row) for row in ids]
    return tokenizer.convert_ids_to_tokens(ids)


def _model_info(slot: ModelSlot) -> dict:
    p = slot.pipeline
    if p is None:
        return {"name": slot.name, "loaded": False}
    return {"name": slot.name, "loaded": True, **p.info(), "hidden_size": p.config.hidden_size,
            "options": p.options, "precision": getattr(getattr(p.model, "precision", None), "as_dict", dict)()}
