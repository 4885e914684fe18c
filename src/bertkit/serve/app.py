"""The HTTP API: routes turn requests into pipeline items and features, the batcher runs them.

    POST /v1/embeddings   OpenAI's shape: {"input": str | [str], "model", "encoding_format": float|base64}
    POST /predict         {"inputs": the pipeline's first argument, "parameters": its other arguments and
                          options, "model", "truncate"} -> {"outputs": what the pipeline returns, ...}
    POST /tokenize        {"inputs", "parameters", "model"}: the features each input becomes (windows for NER/QA)
    GET  /health          200 once every model is loaded and warmed up, 503 before
    GET  /info            models, tasks, labels, lengths, batching limits
    GET  /metrics         Prometheus

A handler validates its request (4xx with a JSON body naming the problem), preprocesses every item,
then hands the features to the model's batcher in chunks of `max_client_batch_size` items, and
postprocesses each item's outputs. Every failure is a JSON error; the server stays up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from bertkit.errors import BertkitError
from bertkit.serve.batcher import Batcher, BatchLimits
from bertkit.serve.metrics import ServeMetrics

logger = logging.getLogger(__name__)

# A small input of each task, run once at start-up so the first request does not pay for lazy init.
WARMUP_INPUTS = {
    "feature-extraction": "Warm up the model.",
    "text-classification": "Warm up the model.",
    "token-classification": "Warm up the model.",
    "fill-mask": "Warm up the [MASK].",
    "question-answering": {"question": "What is warmed up?", "context": "The model is warmed up."},
    "multiple-choice": {"question": "What is warmed up?", "choices": ["the model", "the server"]},
}


@dataclass
class ServeSettings:
    limits: BatchLimits = field(default_factory=BatchLimits)
    max_concurrent_requests: int = 512  # model requests in flight; beyond: 429 at once
    max_client_batch_size: int = 32  # inputs handed to the batcher at once from one request


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
    """Pipeline outputs may hold numpy scalars and arrays."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_jsonable, ensure_ascii=False, separators=(",", ":")).encode()


def error_response(status: int, message: str, kind: str, headers: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    truncate: bool = True


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: Any = None  # the pipeline's first argument; the others (context, choices, ...) in parameters
    parameters: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None
    truncate: bool = True


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: Any = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None


@dataclass
class ModelSlot:
    name: str
    load: Callable[[], Any]  # -> a bertkit pipeline (or anything with its low-level contract)
    pipeline: Any = None
    batcher: Batcher | None = None


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

    async def load(self) -> None:
        try:
            for slot in self.slots.values():
                slot.pipeline = await asyncio.to_thread(slot.load)
                p = slot.pipeline
                slot.batcher = Batcher(slot.name, p.forward, p.num_tokens, self.settings.limits, self.metrics)
                slot.batcher.start()
                call = _prepare(p, WARMUP_INPUTS[p.task], {}, truncate=True)
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

    def slot(self, name: str | None) -> ModelSlot:
        if not self.ready:
            raise ApiError(503, self.load_error or "the models are loading; see GET /health", "not_ready")
        slot = self.slots.get(name or self.default)
        if slot is None:
            raise ApiError(404, f"model {name!r} is not served here; served: {', '.join(self.slots)}",
                           "model_not_found")
        return slot

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

    @property
    def truncated(self) -> list[int]:
        """The items cut to the model's length."""
        return [i for i, feats in enumerate(self.features) if any(f.truncated for f in feats)]


def _prepare(p, inputs: Any, parameters: dict, truncate: bool) -> _Call:
    """Validate and preprocess everything before any model work; the pipeline's complaints about
    the inputs are the client's to fix (400), an input over the length limit with truncate=false is 413."""
    if isinstance(inputs, list) and not inputs:
        raise ApiError(400, "inputs is empty: send one input or a non-empty list")
    # As the pipeline's own __call__: its options (top_k, normalize, ...) go to pre/postprocessing,
    # the other keywords (text_pair, context, choices, ...) to parse.
    options = {**p.options, **{k: v for k, v in parameters.items() if k in p.options}}
    keywords = {k: v for k, v in parameters.items() if k not in p.options}
    try:
        single, items = p.parse(**keywords) if inputs is None else p.parse(inputs, **keywords)
        call = _Call(single, items, [p.preprocess(item, **options) for item in items], options)
    except (BertkitError, ValueError, TypeError) as err:
        raise ApiError(400, f"invalid inputs for a {p.task} model: {err}") from err
    if call.truncated and not truncate:
        raise ApiError(413, f"input {call.truncated[0]} is longer than this model's limit of {p.max_seq_length} "
                            f"tokens (max_seq_length); send truncate=true to cut it, or shorten it",
                       "input_too_long")
    return call


async def _run(state: ServerState, slot: ModelSlot, call: _Call) -> list:
    """The postprocessed answer of every item; the items go to the batcher in client-batch chunks so
    that one huge request does not hold a whole batching window."""
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
            except (BertkitError, ValueError, TypeError) as err:  # e.g. "top_k": "three"
                raise ApiError(400, f"invalid parameters for a {p.task} model: {err}") from err
            at += len(feats)
    return results


def _tokens_used(p, call: _Call) -> int:
    return sum(p.num_tokens(f) for feats in call.features for f in feats)


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


class _MetricsMiddleware:
    """Counts requests by route and status (unknown paths share one label, to bound cardinality)."""

    def __init__(self, app, state: ServerState, routes: set[str]):
        self.app, self.state, self.routes = app, state, routes

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
            await self.app(scope, receive, send_and_record)
        finally:
            self.state.metrics.requests.labels(route, str(status[0])).inc()
            self.state.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def create_app(loaders: dict[str, Callable[[], Any]], settings: ServeSettings | None = None) -> FastAPI:
    """The app serving `loaders` (name -> a function returning a pipeline); the first is the default
    model. Models load in the background after start-up, so /health can say 503 meanwhile."""
    state = ServerState(loaders, settings or ServeSettings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        loading = asyncio.ensure_future(state.load())
        yield
        await loading
        await state.close()

    app = FastAPI(title="bertkit serve", lifespan=lifespan, default_response_class=JsonResponse)
    app.state.serve = state

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'] if part != 'body') or 'body'}: {e['msg']}"
                             for e in err.errors())
        return error_response(422 if "json_invalid" not in {e["type"] for e in err.errors()} else 400,
                              problems, "invalid_request_error")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(err.status, err.message, err.kind)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        logger.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}: {err}", "internal_error")

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest, request: Request):
        async def handle():
            slot = state.slot(body.model)
            p = slot.pipeline
            if p.task != "feature-extraction":
                raise ApiError(400, f"model {slot.name!r} is a {p.task} model, not an embedding model; "
                                    f"use POST /predict")
            call = _prepare(p, body.input, {}, body.truncate)
            vectors = await _run(state, slot, call)
            if body.dimensions is not None and body.dimensions != len(vectors[0]):
                raise ApiError(400, f"dimensions={body.dimensions}: model {slot.name!r} gives "
                                    f"{len(vectors[0])}-dimensional vectors only")
            data = [{"object": "embedding", "index": i, "embedding": _encode(vector, body.encoding_format)}
                    for i, vector in enumerate(vectors)]
            tokens = _tokens_used(p, call)
            return JsonResponse({"object": "list", "data": data, "model": slot.name,
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                                 "truncated": call.truncated})
        return await _serve_request(state, request, handle)

    @app.post("/predict")
    async def predict(body: PredictRequest, request: Request):
        async def handle():
            slot = state.slot(body.model)
            p = slot.pipeline
            call = _prepare(p, body.inputs, body.parameters, body.truncate)
            answers = await _run(state, slot, call)
            return JsonResponse({"model": slot.name, "task": p.task, "outputs": p.shape_output(call.single, answers),
                                 "usage": {"prompt_tokens": _tokens_used(p, call)}, "truncated": call.truncated})
        return await _serve_request(state, request, handle)

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        slot = state.slot(body.model)
        p = slot.pipeline
        call = _prepare(p, body.inputs, body.parameters, truncate=True)
        return JsonResponse({"model": slot.name, "truncated": call.truncated, "outputs": [
            [{"input_ids": f.input_ids, "token_type_ids": f.token_type_ids, "tokens": _tokens(p.tokenizer, f.input_ids)}
             for f in feats] for feats in call.features]})

    @app.get("/health")
    async def health():
        if state.ready:
            return JsonResponse({"status": "ok"})
        status = "failed" if state.load_error else "loading"
        return JsonResponse({"status": status, "error": state.load_error}, 503)

    @app.get("/info")
    async def info():
        limits = state.settings.limits
        return JsonResponse({
            "ready": state.ready,
            "pid": os.getpid(),  # which replica answered, behind a load balancer
            "default_model": state.default,
            "models": [_model_info(slot) for slot in state.slots.values()],
            "max_batch_tokens": limits.max_batch_tokens, "max_batch_requests": limits.max_batch_requests,
            "max_wait_ms": limits.max_wait_ms, "workers": limits.workers, "max_concurrent_requests": state.settings.max_concurrent_requests,
            "max_client_batch_size": state.settings.max_client_batch_size})

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=state.metrics.content_type)

    routes = {"/v1/embeddings", "/predict", "/tokenize", "/health", "/info", "/metrics"}
    app.add_middleware(_MetricsMiddleware, state=state, routes=routes)
    return app


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
