"""Converge a Size=N group on the `file` instance plugin and print what it cost.

For N in 100, 1,000 and 10,000 (or --sizes; --big adds 100,000): time from commit to converged,
peak RSS, thread count, and CPU used per second once steady; then delete instance files one by
one and time each return (until the runtime says it provisioned the slot again): median and
max. Each size runs in a fresh process and a fresh INFRAKIT_HOME, so figures do not bleed
together.

    .venv/bin/python bench/converge.py [--sizes 100,1000,10000] [--big] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BIG = 100_000


def measure(size: int, interval: str, steady: float, heals_wanted: int) -> dict[str, float]:
    from infrakit import Runtime
    from infrakit.plugins.instance.file import FileInstancePlugin

    home = Path(tempfile.mkdtemp(prefix="ik-bench-"))
    spec = {
        "ID": "bench",
        "Properties": {
            "Allocation": {"Size": size},
            "Instance": {"Plugin": "instance-file", "Properties": {"Note": "bench"}},
            "Flavor": {"Plugin": "flavor-vanilla"},
            "Health": {"Interval": interval},
        },
    }
    with Runtime(home=home) as runtime:
        started = time.monotonic()
        runtime.commit(spec)
        while not runtime.info("bench")["Converged"]:
            time.sleep(0.05)
        converge = time.monotonic() - started
        threads = threading.active_count()
        time.sleep(1.0)  # let the last tells drain before measuring the steady state
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(steady)
        cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        plugin = runtime.plugins["instance-file"]
        assert isinstance(plugin, FileInstancePlugin)
        heals = [_heal_one(runtime, plugin, n) for n in range(heals_wanted)]
    shutil.rmtree(home, ignore_errors=True)  # N instance files: leave none behind
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "size": size,
        "converge_s": converge,
        "peak_rss_mib": rss_mib,
        "threads": threads,
        "steady_cpu_pct": cpu * 100,
        "heal_s": statistics.median(heals),
        "heal_max_s": max(heals),
    }


def _heal_one(runtime: Any, plugin: Any, n: int) -> float:
    """Delete the n-th instance file; seconds until its slot's new instance is provisioned
    (the runtime's own event, so the figure does not include a describe of N files)."""
    victim = sorted(name for name in os.listdir(plugin.directory) if not name.startswith("."))[n]
    back = threading.Event()

    def heard(event: Any) -> None:
        if event.kind == "provisioned" and event.instance != victim:
            back.set()

    unsubscribe = runtime.events.subscribe(heard)
    try:
        deleted = time.monotonic()
        (plugin.directory / victim).unlink()
        if not back.wait(120):
            raise SystemExit(f"{victim} was not replaced within 120 s")
        heal = time.monotonic() - deleted
    finally:
        unsubscribe()
    time.sleep(1.0)  # let the group confirm before the next one
    return heal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--big", action="store_true", help="add 100,000 to the sizes (minutes)")
    parser.add_argument("--interval", default="1s", help="the group's Health.Interval")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds to sample CPU")
    parser.add_argument("--heals", type=int, default=5, help="instance files to delete, one by one")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.interval, args.steady, args.heals)))
        return
    print(
        f"{'N':>7} {'converge':>9} {'peak RSS':>9} {'threads':>8} {'steady CPU':>11}"
        f" {'heal':>8} {'(max)':>7}   (file plugin, Health.Interval {args.interval};"
        f" heal: median of {args.heals})"
    )
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.big and BIG not in sizes:
        sizes.append(BIG)
    for size in sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(size),
                "--interval",
                args.interval,
                "--steady",
                str(args.steady),
                "--heals",
                str(args.heals),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ},
        )
        if out.returncode != 0:
            print(f"{size:>7} failed:\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{size:>7} {r['converge_s']:>8.2f}s {r['peak_rss_mib']:>6.0f}MiB {r['threads']:>8}"
            f" {r['steady_cpu_pct']:>10.1f}% {r['heal_s'] * 1000:>6.0f}ms"
            f" {r['heal_max_s'] * 1000:>5.0f}ms"
        )


if __name__ == "__main__":
    main()
