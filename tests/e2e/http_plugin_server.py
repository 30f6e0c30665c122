"""A small plugin server for the tests: our built-in `file` instance plugin served with
`HttpRpcServer` on a unix socket, as a Go InfraKit plugin would serve itself (HTTP JSON-RPC).

Usage: python http_plugin_server.py SOCKET DIR [PROVISION_DELAY_SECONDS]
Prints `ready` once it serves; runs until killed. The delay makes every provision slow, so a
test can kill the process mid-convergence.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from actors.http_rpc import HttpRpcServer
from infrakit.plugins import create_plugin
from infrakit.spi.instance import InstancePlugin
from infrakit.wire.plugin import plugin_handlers


def main() -> None:
    socket, directory = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    plugin = create_plugin("file", {"Dir": directory}, Path(directory))
    assert isinstance(plugin, InstancePlugin)
    handlers = plugin_handlers(plugin)
    provision = handlers["Instance.Provision"]

    def slow_provision(params: dict[str, Any]) -> Any:
        time.sleep(delay)
        return provision(params)

    handlers["Instance.Provision"] = slow_provision
    HttpRpcServer(socket, handlers, name="test-http-plugin").start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
