"""What a follower's forwarding costs: Group API calls sent to the leader directly and through
a follower that forwards them (issue 15), over real ZeroMQ sockets.

Runs two runtimes in this process on one temporary home (the file election: one leads, one
follows), each serving the Group API on a tcp:// port on 127.0.0.1, commits a 3-instance file
group through the leader, then times `--calls` calls of `Group.DescribeGroup` (a question) and
of a pretend `Group.CommitGroup` (validated whole by the leader's manager) against each, one
at a time, and prints p50 and p99 per path and their ratio. Then `--parallel` threads each
calling the follower, to show forwarded calls running side by side (throughput, calls/s).

    .venv/bin/python bench/forward.py [--calls 500] [--parallel 8]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.remote import RemoteRef
from infrakit import Runtime

SPEC: dict[str, Any] = {
    "ID": "bench",
    "Properties": {
        "Allocation": {"Size": 3},
        "Instance": {"Plugin": "instance-file", "Properties": {"Note": "v1"}},
        "Flavor": {"Plugin": "flavor-vanilla"},
    },
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def timed(call: Callable[[], Any], count: int) -> list[float]:
    for _ in range(20):  # warm the connections and caches
        call()
    seconds = []
    for _ in range(count):
        began = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - began)
    return seconds


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q * 100) - 1]


def throughput(endpoint: str, threads: int, per_thread: int) -> float:
    """Calls per second of `threads` clients each making `per_thread` describes at once."""
    start = threading.Barrier(threads + 1)

    def work() -> None:
        with RemoteRef(endpoint, timeout=30.0) as ref:
            ref.call("Group.DescribeGroup", {"ID": "bench"})
            start.wait()
            for _ in range(per_thread):
                ref.call("Group.DescribeGroup", {"ID": "bench"})

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    return threads * per_thread / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-forward-") as root:
        home = Path(root) / "home"
        ports = [free_port(), free_port()]
        configs = [{"Manager": {"Listen": [f"tcp://127.0.0.1:{port}"]}} for port in ports]
        with Runtime(configs[0], home=home) as leader:
            follower = Runtime(configs[1], home=home).start(wait_for_leadership=0)
            try:
                assert leader.is_leader() and not follower.is_leader()
                leader.commit(SPEC)
                leader.wait_converged("bench")
                rows = []
                for name, port in (("leader", ports[0]), ("follower", ports[1])):
                    with RemoteRef(f"tcp://127.0.0.1:{port}", timeout=30.0) as ref:
                        describe = timed(
                            lambda r=ref: r.call("Group.DescribeGroup", {"ID": "bench"}),
                            args.calls,
                        )
                        pretend = timed(
                            lambda r=ref: r.call(
                                "Group.CommitGroup", {"Spec": SPEC, "Pretend": True}
                            ),
                            args.calls,
                        )
                    rows.append((name, describe, pretend))
                print(f"{args.calls} calls each, one at a time (ms):")
                print(
                    f"{'path':<10} {'describe p50':>13} {'p99':>7} {'pretend p50':>12} {'p99':>7}"
                )
                for name, describe, pretend in rows:
                    print(
                        f"{name:<10} {statistics.median(describe) * 1e3:>13.2f}"
                        f" {quantile(describe, 0.99) * 1e3:>7.2f}"
                        f" {statistics.median(pretend) * 1e3:>12.2f}"
                        f" {quantile(pretend, 0.99) * 1e3:>7.2f}"
                    )
                ratio = statistics.median(rows[1][1]) / statistics.median(rows[0][1])
                print(f"describe through the follower / direct, p50: {ratio:.2f}x")
                per = max(1, args.calls // args.parallel)
                for name, port in (("leader", ports[0]), ("follower", ports[1])):
                    rate = throughput(f"tcp://127.0.0.1:{port}", args.parallel, per)
                    print(f"{args.parallel} clients at once via the {name}: {rate:.0f} describes/s")
            finally:
                follower.stop()


if __name__ == "__main__":
    main()
