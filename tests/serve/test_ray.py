"""`bertkit serve --ray --replicas 2` on a local Ray instance (skipped where Ray Serve is not installed)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytest.importorskip("ray.serve", reason='Ray Serve is an optional extra: pip install "ray[serve]"')

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_ray_replicas_answer_and_stop_on_sigterm(minilm_path, tmp_path):
    from bertkit.inference import pipeline

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "ray.log"
    process = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", "--ray", "--replicas", "2", "--threads", "1",
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        pids = set()
        while len(pids) < 2:  # both replicas loaded and answering
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                info = httpx.get(f"{url}/info", timeout=30).json()
                if info["ready"]:
                    pids.add(info["pid"])
            except (httpx.TransportError, ValueError, KeyError):
                time.sleep(1)
        texts = ["A man is eating food.", "A monkey is playing drums."]
        expected = np.array(pipeline(minilm_path)(texts))
        for _ in range(6):
            body = httpx.post(f"{url}/v1/embeddings", json={"input": texts}, timeout=60).json()
            np.testing.assert_allclose([d["embedding"] for d in body["data"]], expected, atol=2e-5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
