"""Helpers: the app on bertkit's uvicorn server in a thread (real HTTP, real disconnects), ready."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx

from bertkit.serve.server import bind, make_server


@contextlib.contextmanager
def running(app, ready: bool = True):
    """Yields the base URL of `app` served on 127.0.0.1 at a free port; with `ready`, once /health is 200."""
    sock = bind("127.0.0.1", 0)
    server = make_server(app, drain_timeout=5, log_level="warning")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if ready:
        wait_ready(url, deadline)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def wait_ready(url: str, deadline: float) -> None:
    while httpx.get(f"{url}/health").status_code != 200:
        assert time.monotonic() < deadline, f"not ready: {httpx.get(f'{url}/health').text}"
        time.sleep(0.02)
