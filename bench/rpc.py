"""Round-trip latency and throughput of `actors.remote` against a bare pyzmq JSON echo.

The server runs in another process (this script with --serve), over ipc:// and
tcp://127.0.0.1. "ours" is RemoteRef -> RpcServer with a `Flavor.Healthy`-like handler.
"bare" is a DEALER sending the same JSON-RPC request to a ROUTER that parses it and answers
the same reply in its receive loop, with no threads, using the standard library's json (the
baseline the targets were set against); "bare-orjson" is the same with our codec, orjson, so
that its ratio shows what the rest of our code costs. Latency: one call at a time, p50/p99.
Throughput: 64 calls in flight from one thread (a window of futures for ours).
Figures are medians of --rounds interleaved runs.

The "http" rows are the HTTP transport (Go InfraKit's wire): HttpRef -> HttpRpcServer on a
unix socket, same handler; throughput there is 16 threads making blocking calls (HttpRef
has no async calls).

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
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actors.http_rpc import HttpRef, HttpRpcServer
from actors.remote import RemoteRef, RpcServer

PARAMS = {"Type": "Flavor", "Instance": {"ID": "i-0123456789", "Tags": {"group": "workers"}}}
IN_FLIGHT = 64


def healthy(params: dict[str, Any]) -> dict[str, int]:
    """The benchmark's trivial method, shaped like Flavor.Healthy's answer."""
    return {"Health": 1}


def serve_ours(endpoint: str) -> None:
    with RpcServer(endpoint, {"Flavor.Healthy": healthy}) as server:
        print(server.endpoint, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def serve_http(path: str) -> None:
    with HttpRpcServer(path, {"Flavor.Healthy": healthy}, workers=16) as server:
        print(server.endpoint, flush=True)
        sys.stdin.read()


def timed_calls(ref: RemoteRef | HttpRef, count: int) -> list[float]:
    """Seconds each of `count` blocking calls took, one at a time, after 300 to warm up."""
    for _ in range(300):
        ref.call("Flavor.Healthy", PARAMS)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        ref.call("Flavor.Healthy", PARAMS)
        samples.append(time.perf_counter() - started)
    return samples


def bench_http(
    endpoint: str, latency_calls: int, calls: int, kind: str
) -> tuple[float, float, float]:
    with HttpRef(endpoint, timeout=30, pool=16) as ref:
        samples = timed_calls(ref, latency_calls)
        threads = 16

        def run(count: int) -> None:
            for _ in range(count):
                ref.call("Flavor.Healthy", PARAMS)

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, [calls // threads] * threads))
        elapsed = time.perf_counter() - started
    return (*percentiles(samples), (calls // threads) * threads / elapsed)


def codec(kind: str) -> tuple[Any, Any]:
    """(dumps to bytes, loads) for a bare kind."""
    if kind == "bare-orjson":
        return orjson.dumps, orjson.loads
    return (lambda value: json.dumps(value).encode()), json.loads


def serve_bare(endpoint: str, kind: str) -> None:
    dumps, loads = codec(kind)
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
            request = loads(body)
            reply = {"jsonrpc": "2.0", "id": request["id"], "result": healthy(request["params"])}
            sock.send_multipart([identity, dumps(reply)])


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


def bench_ours(
    endpoint: str, latency_calls: int, calls: int, kind: str
) -> tuple[float, float, float]:
    with RemoteRef(endpoint, timeout=30) as ref:
        samples = timed_calls(ref, latency_calls)
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


def bench_bare(
    endpoint: str, latency_calls: int, calls: int, kind: str
) -> tuple[float, float, float]:
    dumps, loads = codec(kind)
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    ids = iter(range(1, 1 << 62))

    def send() -> None:
        request = {"jsonrpc": "2.0", "id": next(ids), "method": "Flavor.Healthy", "params": PARAMS}
        sock.send(dumps(request))

    def receive() -> None:
        loads(sock.recv())["result"]

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


KINDS = {"bare": bench_bare, "bare-orjson": bench_bare, "ours": bench_ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--latency-calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many runs")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, endpoint = args.serve
        if kind == "ours":
            serve_ours(endpoint)
        elif kind == "http":
            serve_http(endpoint)
        else:
            serve_bare(endpoint, kind)
        return

    directory = tempfile.mkdtemp(prefix="rpc-bench-")
    rows: list[tuple[str, str, float, float, float]] = []
    for transport in ("ipc", "tcp"):
        runs: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in KINDS}
        for _ in range(args.rounds):  # interleaved, so that load from elsewhere hits all
            for kind, bench in KINDS.items():
                if transport == "ipc":
                    requested = f"ipc://{directory}/{kind}.sock"
                else:
                    requested = "tcp://127.0.0.1:0"
                process, endpoint = start_server(kind, requested)
                try:
                    runs[kind].append(bench(endpoint, args.latency_calls, args.calls, kind))
                finally:
                    stop_server(process)
        figures = {
            kind: tuple(statistics.median(run[i] for run in results) for i in range(3))
            for kind, results in runs.items()
        }
        ours = figures["ours"]
        for kind in KINDS:
            rows.append((transport, kind, *figures[kind]))
        for kind in ("bare", "bare-orjson"):
            bare = figures[kind]
            ratios = (ours[0] / bare[0], ours[1] / bare[1], ours[2] / bare[2])
            rows.append((transport, f"ours/{kind}", *ratios))

    runs_http = []
    for _ in range(args.rounds):
        process, endpoint = start_server("http", f"{directory}/http.sock")
        try:
            runs_http.append(bench_http(endpoint, args.latency_calls, args.calls, "http"))
        finally:
            stop_server(process)
    http = tuple(statistics.median(run[i] for run in runs_http) for i in range(3))
    rows.append(("http", "ours-http", *http))
    ipc_ours = next(row[2:] for row in rows if row[:2] == ("ipc", "ours"))
    rows.append(("http", "http/ipc-ours", *(h / z for h, z in zip(http, ipc_ours, strict=True))))

    print(f"{'transport':<10}{'server':<18}{'p50 us':>10}{'p99 us':>10}{'calls/s':>12}")
    for transport, kind, p50, p99, throughput in rows:
        if "/" in kind:
            print(f"{transport:<10}{kind:<18}{p50:>9.2f}x{p99:>9.2f}x{throughput:>11.2f}x")
        else:
            print(f"{transport:<10}{kind:<18}{p50:>10.0f}{p99:>10.0f}{throughput:>12.0f}")
    print("targets: p50 ours/bare <= 2x, throughput ours/bare >= 0.5x;", f"{os.cpu_count()} cpus")


if __name__ == "__main__":
    main()
