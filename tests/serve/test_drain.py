"""SIGTERM under load: the server stops accepting, answers every request it accepted, exits 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from serve.serving import wait_ready

HERE = Path(__file__).resolve().parent


def start(log_path: Path, delay: float) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(HERE / "fake_server.py"), str(delay)],
                               stdout=subprocess.DEVNULL, stderr=open(log_path, "w"), env=env)
    deadline = time.monotonic() + 60
    while not (found := re.search(r"running on (http://127\.0\.0\.1:\d+)", log_path.read_text())):
        assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.05)
    wait_ready(found.group(1), deadline)
    return process, found.group(1)


def test_sigterm_under_load_drains_every_accepted_request_and_exits_0(tmp_path):
    log = tmp_path / "server.log"
    process, url = start(log, delay=0.01)
    try:
        async def load():
            results = []
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                async def one(i):
                    try:
                        response = await client.post("/v1/embeddings", json={"input": ["the cat"] * (1 + i % 8)})
                        results.append(response.status_code)
                    except httpx.TransportError:  # refused or closed before the server read it
                        results.append("not accepted")
                    if len(results) == 40:
                        process.send_signal(signal.SIGTERM)  # while ~32 requests are in flight

                semaphore = asyncio.Semaphore(32)

                async def bounded(i):
                    async with semaphore:
                        await one(i)
                await asyncio.gather(*(bounded(i) for i in range(300)))
            return results

        results = asyncio.run(load())
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    accepted, answered = map(int, re.search(r"drained: (\d+) model requests accepted, (\d+) answered", text).groups())
    assert set(results) <= {200, "not accepted"}, set(results)
    assert "not accepted" in results  # the server did stop accepting
    assert accepted == answered == results.count(200) > 40, (accepted, answered, results.count(200))
