"""Running the app on uvicorn, with a graceful drain on SIGTERM / SIGINT that exits 0."""

from __future__ import annotations

import contextlib
import signal

import uvicorn

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DrainingServer(uvicorn.Server):
    """uvicorn's server. On SIGTERM it stops accepting, lets the requests in flight finish (up to
    `timeout_graceful_shutdown`), then stops the models. uvicorn itself re-raises the signal after
    that, which makes the exit status 143; a drain that went as planned exits 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app, host: str, port: int, drain_timeout: float, log_level: str = "info") -> None:
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=drain_timeout,
                            # keep-alive: a load balancer or client reuses its connections
                            timeout_keep_alive=30, access_log=False)
    DrainingServer(config).run()
