"""Below the app: what the HTTP parser refuses is JSON with its real status, over a real socket;
the port is bound (or refused, in one line) before anything loads."""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from serve.fake_pipeline import FakePipeline
from serve.serving import running

from bertkit.errors import ConfigError
from bertkit.serve.app import create_app
from bertkit.serve.server import MAX_HEAD_BYTES, bind


def exchange(url: str, pieces: list[bytes]) -> tuple[int, dict, dict]:
    """Send `pieces` on a new connection, one after the other; (status, headers, JSON body) of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):  # refused before the rest was sent
                break
            time.sleep(0.01)  # separate reads on the server's side
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < length(data):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection before the whole answer: {data!r}"
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def length(data: bytes) -> int:
    found = re.search(rb"\r\ncontent-length: (\d+)\r\n", data.partition(b"\r\n\r\n")[0] + b"\r\n", re.I)
    return int(found.group(1)) if found else 0


CASES = [
    (b"GET /" + b"a" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line is over"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n", 431,
     "request headers are over"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(2000)) + b"\r\n", 431,
     "request headers are over"),
    (b"HELLO THERE\r\n\r\n", 400, "malformed HTTP request: illegal request line"),
    (b"GET /health HTTP/1.1\r\n\r\n", 400, "malformed HTTP request: Missing mandatory Host: header"),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400, "malformed HTTP request"),
]


def test_what_the_http_parser_refuses_is_a_json_error():
    with running(create_app({"fake": FakePipeline})) as url:
        for raw, status, words in CASES:
            # all at once (the app refuses a head over the bound) and in pieces (h11 does, while it arrives)
            for pieces in ([raw], [raw[i:i + 4096] for i in range(0, len(raw), 4096)]):
                got, headers, body = exchange(url, pieces)
                assert got == status and headers["content-type"] == "application/json", (words, got, body)
                assert body["error"]["code"] == status and words in body["error"]["message"], (words, body)
        assert exchange(url, [b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])[2] == {"status": "ok"}


def test_a_port_in_use_is_one_error_line():
    taken = bind("127.0.0.1", 0)
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=rf"--port {port}: cannot listen on 127.0.0.1:{port}: Address already in "
                                              r"use \(another server is using it; stop it or pick another --port\)"):
            bind("127.0.0.1", port)
    finally:
        taken.close()
    with pytest.raises(ConfigError, match="--host 'no such host!'"):
        bind("no such host!", 0)


def test_served_connections_send_without_nagle_delay():
    """The socket bound before the models load says it is TCP, so that asyncio sets TCP_NODELAY on
    every connection: without it a keep-alive client waited for its own delayed ACK (40 ms) on
    each response written in two parts."""
    import asyncio

    sock = bind("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP

    async def accepted_nodelay() -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                seen.set_result(transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
        server.close()
        return value

    assert asyncio.run(accepted_nodelay()) != 0
