"""`bertkit serve`: an HTTP server over bertkit pipelines (needs the `serve` extra: fastapi, uvicorn,
prometheus-client). `create_app` builds the ASGI app; `bertkit.cli.serve` runs it."""
