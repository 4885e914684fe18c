"""`python tests/serve/fake_server.py DELAY`: the server over a fake pipeline in its own process,
on a free port (printed by uvicorn), as `bertkit serve` runs it: for the SIGTERM tests."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: helpers and serve.*

from serve.fake_pipeline import FakePipeline  # noqa: E402

from bertkit.serve.app import ServeSettings, create_app  # noqa: E402
from bertkit.serve.server import bind, serve  # noqa: E402

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fake = FakePipeline(delay=float(sys.argv[1]))
    serve(create_app({"fake": lambda: fake}, ServeSettings()), bind("127.0.0.1", 0), drain_timeout=30)
