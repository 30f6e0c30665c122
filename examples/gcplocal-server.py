"""Run the gcplocal Compute Engine emulator for the gcp instance plugin's example and tests.

    python examples/gcplocal-server.py --port 8400      (binds 127.0.0.1)

It is `gcplocal start --host 127.0.0.1`, with one fix: gcplocal 0.1 gives each operation a hex
`id` ("f02dbac9"), where the Compute API's is a number (uint64), so google-cloud-compute fails
to read the answer of nearly every insert and delete. Here each id is the same number, written
in decimal. Everything else is gcplocal's own (its state is in memory, gone when it stops).
"""

from __future__ import annotations

import argparse
from typing import Any

from gcplocal.server import GCPLocalServer
from gcplocal.state import StateStore


def fix_operation_ids(store: StateStore) -> None:
    """Make the operations that `store` creates carry numeric IDs, as the Compute API's do."""
    create = store.create_operation

    def create_operation(*args: Any, **kwargs: Any) -> dict[str, Any]:
        operation: dict[str, Any] = create(*args, **kwargs)
        operation["id"] = str(int(operation["id"], 16))  # the stored operation is this dict
        return operation

    store.create_operation = create_operation  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8400, help="port to listen on (8400)")
    args = parser.parse_args()
    store = StateStore()
    fix_operation_ids(store)
    GCPLocalServer(host=args.host, port=args.port, state=store).start()


if __name__ == "__main__":
    main()
