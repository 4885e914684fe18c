"""Running the app on uvicorn: the port bound before the models load, HTTP errors below the app
in the API's JSON shape, and a graceful drain on SIGTERM / SIGINT that exits 0."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import signal
import socket
import threading

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from bertkit.errors import ConfigError

logger = logging.getLogger("bertkit")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# What the request line and the headers together may take (h11's default): beyond it a request
# is refused before any of it reaches the app, so a client cannot make the server hold more.
MAX_HEAD_BYTES = 16 * 1024


class JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, except that a request h11 cannot parse gets the API's JSON error
    with its real status (414 for a request line over MAX_HEAD_BYTES, 431 for headers over it, 400
    with h11's reason for anything else malformed) instead of a text/plain 400. h11 rather than
    httptools, because h11 bounds a request head that is still arriving; the app refuses (414, 431)
    a complete one over the bound, which h11 lets through when it comes in one read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._parse_error: h11.RemoteProtocolError | None = None
        next_event = self.conn.next_event

        def remember_errors():
            try:
                return next_event()
            except h11.RemoteProtocolError as err:
                self._parse_error = err
                raise

        self.conn.next_event = remember_errors

    def send_400_response(self, msg: str) -> None:
        head = self.conn.trailing_data[0]
        if len(head) > MAX_HEAD_BYTES:
            if head.find(b"\r\n", 0, MAX_HEAD_BYTES) < 0:
                status, kind, message = 414, "uri_too_long", f"the request line is over {MAX_HEAD_BYTES} bytes"
            else:
                status, kind, message = 431, "headers_too_large", f"the request headers are over {MAX_HEAD_BYTES} bytes"
        else:
            reason = str(self._parse_error) if self._parse_error is not None else msg
            status, kind, message = 400, "invalid_request_error", f"malformed HTTP request: {reason}"
        body = json.dumps({"error": {"message": message, "type": kind, "code": status}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # a response had started on this connection: nothing to add
            pass
        self.transport.close()


class DrainingServer(uvicorn.Server):
    """uvicorn's server. On SIGTERM it stops accepting, lets the requests in flight finish (up to
    `timeout_graceful_shutdown`), then stops the models. uvicorn itself re-raises the signal after
    that, which makes the exit status 143; a drain that went as planned exits 0 instead."""

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():  # a server in a thread (the tests)
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if sockets and self.started:  # uvicorn logs its address only for the sockets it binds itself
            host, port = sockets[0].getsockname()[:2]
            logger.info("bertkit serve: running on http://%s:%d (Ctrl-C or SIGTERM drains and stops)",
                        f"[{host}]" if ":" in host else host, port)


def bind(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a port in use is one error line before any model loads,
    and nothing can take the port between this check and the server's start."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise ConfigError(f"--host {host!r}: not an address this machine can bind ({err.strerror})") from None
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on the connections of a socket that says
    # it is TCP. Without it Nagle's algorithm held each response's second write until the client's
    # delayed ACK, 40 ms on every keep-alive request (measured: /health 44 ms, 1.5 ms with it).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart reuses the port at once
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port}: {err.strerror}"
                          f"{' (another server is using it; stop it or pick another --port)' if err.errno == errno.EADDRINUSE else ''}"
                          ) from None
    sock.set_inheritable(True)
    return sock


def make_server(app, drain_timeout: float, log_level: str = "info") -> DrainingServer:
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=drain_timeout,
                            # keep-alive: a load balancer or client reuses its connections
                            timeout_keep_alive=30, access_log=False,  # the app logs its own (--no_access_log)
                            http=JsonErrorsH11Protocol, h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    return DrainingServer(config)


def serve(app, sock: socket.socket, drain_timeout: float, log_level: str = "info") -> None:
    """Serve `app` on the bound socket (`bind`) until SIGTERM / SIGINT, then drain."""
    make_server(app, drain_timeout, log_level).run(sockets=[sock])
