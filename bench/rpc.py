"""Round-trip latency and throughput of `actors.remote` against a bare pyzmq JSON echo.

The server runs in another process (this script with --serve), over ipc:// and
tcp://127.0.0.1. "ours" is RemoteRef -> RpcServer with a `Flavor.Healthy`-like handler run
on the worker pool; "inline" is the same with the method in `inline` (run on the I/O thread);
"bare" is a DEALER sending the same JSON-RPC request to a ROUTER that parses it and answers
the same reply in its receive loop, with no threads. Latency: one call at a time, p50/p99.
Throughput: 64 calls in flight from one thread (a window of futures for ours).
Figures are medians of --rounds interleaved runs.

    .venv/bin/python bench/rpc.py [--calls 20000] [--latency-calls 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.remote import RemoteRef, RpcServer

PARAMS = {"Type": "Flavor", "Instance": {"ID": "i-0123456789", "Tags": {"group": "workers"}}}
IN_FLIGHT = 64


def healthy(params: dict[str, Any]) -> dict[str, int]:
    """The benchmark's trivial method, shaped like Flavor.Healthy's answer."""
    return {"Health": 1}


def serve_ours(endpoint: str, inline: bool = False) -> None:
    inline_methods = ["Flavor.Healthy"] if inline else []
    with RpcServer(endpoint, {"Flavor.Healthy": healthy}, inline=inline_methods) as server:
        print(server.endpoint, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def serve_bare(endpoint: str) -> None:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    sock.linger = 0
    sock.bind(endpoint)
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(sys.stdin.fileno(), zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if sys.stdin.fileno() in ready:
            return
        while True:
            try:
                identity, body = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            request = json.loads(body)
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": healthy(request["params"])}
            sock.send_multipart([identity, json.dumps(reply).encode()])


def start_server(kind: str, endpoint: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, endpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def stop_server(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    process.wait(10)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1e6, cuts[98] * 1e6


def bench_ours(endpoint: str, latency_calls: int, calls: int) -> tuple[float, float, float]:
    with RemoteRef(endpoint, timeout=30) as ref:
        for _ in range(300):
            ref.call("Flavor.Healthy", PARAMS)
        samples = []
        for _ in range(latency_calls):
            started = time.perf_counter()
            ref.call("Flavor.Healthy", PARAMS)
            samples.append(time.perf_counter() - started)
        window = collections.deque(
            ref.call_async("Flavor.Healthy", PARAMS) for _ in range(IN_FLIGHT)
        )
        started = time.perf_counter()
        for _ in range(calls - IN_FLIGHT):
            window.popleft().result()
            window.append(ref.call_async("Flavor.Healthy", PARAMS))
        while window:
            window.popleft().result()
        elapsed = time.perf_counter() - started
    return (*percentiles(samples), calls / elapsed)


def bench_bare(endpoint: str, latency_calls: int, calls: int) -> tuple[float, float, float]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    ids = iter(range(1, 1 << 62))

    def send() -> None:
        request = {"jsonrpc": "2.0", "id": next(ids), "method": "Flavor.Healthy", "params": PARAMS}
        sock.send(json.dumps(request).encode())

    def receive() -> None:
        json.loads(sock.recv())["result"]

    try:
        for _ in range(300):
            send()
            receive()
        samples = []
        for _ in range(latency_calls):
            started = time.perf_counter()
            send()
            receive()
            samples.append(time.perf_counter() - started)
        for _ in range(IN_FLIGHT):
            send()
        started = time.perf_counter()
        for _ in range(calls - IN_FLIGHT):
            receive()
            send()
        for _ in range(IN_FLIGHT):
            receive()
        elapsed = time.perf_counter() - started
    finally:
        sock.close(linger=0)
    return (*percentiles(samples), calls / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--latency-calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many runs")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, endpoint = args.serve
        if kind == "bare":
            serve_bare(endpoint)
        else:
            serve_ours(endpoint, inline=kind == "inline")
        return

    directory = tempfile.mkdtemp(prefix="rpc-bench-")
    rows: list[tuple[str, str, float, float, float]] = []
    for transport in ("ipc", "tcp"):
        runs: dict[str, list[tuple[float, float, float]]] = {"bare": [], "ours": [], "inline": []}
        for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits all
            for kind, bench in (("bare", bench_bare), ("ours", bench_ours), ("inline", bench_ours)):
                if transport == "ipc":
                    requested = f"ipc://{directory}/{kind}.sock"
                else:
                    requested = "tcp://127.0.0.1:0"
                process, endpoint = start_server(kind, requested)
                try:
                    runs[kind].append(bench(endpoint, args.latency_calls, args.calls))
                finally:
                    stop_server(process)
        figures = {
            kind: tuple(statistics.median(run[i] for run in results) for i in range(3))
            for kind, results in runs.items()
        }
        bare = figures["bare"]
        for kind in ("bare", "ours", "inline"):
            rows.append((transport, kind, *figures[kind]))
        for kind in ("ours", "inline"):
            ours = figures[kind]
            ratios = (ours[0] / bare[0], ours[1] / bare[1], ours[2] / bare[2])
            rows.append((transport, f"{kind}/bare", *ratios))

    print(f"{'transport':<10}{'server':<13}{'p50 us':>10}{'p99 us':>10}{'calls/s':>12}")
    for transport, kind, p50, p99, throughput in rows:
        if "/" in kind:
            print(f"{transport:<10}{kind:<13}{p50:>9.2f}x{p99:>9.2f}x{throughput:>11.2f}x")
        else:
            print(f"{transport:<10}{kind:<13}{p50:>10.0f}{p99:>10.0f}{throughput:>12.0f}")
    print("targets: p50 ours/bare <= 2x, throughput ours/bare >= 0.5x;", f"{os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
