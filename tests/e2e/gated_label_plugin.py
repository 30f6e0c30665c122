"""A file instance plugin in a process of its own, for scale-in tests: `python THIS NAME DIR
CONTROL` serves it as plugin NAME over the instance files in DIR. While CONTROL/refuse exists,
every Label is refused (a plugin that cannot relabel, as Docker's). While CONTROL/gate exists, a
Label that moves an instance (sets `infrakit.logical_id`) writes CONTROL/blocked and waits until
the gate is removed, then refuses without relabelling: the test kills the runtime there."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from actors.rpc_server import RpcServer
from infrakit.paths import plugins_dir
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi import PluginError
from infrakit.spi.instance import TAG_LOGICAL_ID
from infrakit.wire.plugin import plugin_handlers


class GatedFiles(FileInstancePlugin):
    """The file plugin, with a Label the test can refuse, or hold at a move."""

    def __init__(self, directory: Path, control: Path) -> None:
        super().__init__(directory)
        self.control = control

    def label(self, instance_id: str, labels: Mapping[str, str]) -> None:
        if (self.control / "refuse").exists():
            raise PluginError("this plugin cannot change an instance's tags")
        if TAG_LOGICAL_ID in labels and (self.control / "gate").exists():
            (self.control / "blocked").write_text(f"{instance_id} {labels[TAG_LOGICAL_ID]}")
            while (self.control / "gate").exists():
                time.sleep(0.02)
            raise PluginError("released by the test without relabelling")
        super().label(instance_id, labels)


def main() -> None:
    name, directory, control = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    plugin = GatedFiles(directory, control)
    folder = plugins_dir()
    folder.mkdir(parents=True, exist_ok=True)
    server = RpcServer(f"ipc://{folder / name}", plugin_handlers(plugin), name=name)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("Listening", flush=True)
    stop.wait()
    server.stop()
    plugin.close()


if __name__ == "__main__":
    main()
