"""A plugin on Go InfraKit's HTTP wire, as each Go version serves its handshake: v0.1 answers
only `Plugin.Implements`, later ones `Handshake.Implements`. Either way the runtime's client
learns what it implements and uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.http_rpc import HttpRpcServer, probe_http
from infrakit.plugins.instance.file import FileInstancePlugin
from infrakit.spi import Spec
from infrakit.wire.common import HANDSHAKE
from infrakit.wire.plugin import connect_plugin, plugin_handlers


@pytest.mark.parametrize("served", ["Plugin.Implements", HANDSHAKE])
def test_either_handshake_is_understood(tmp_path: Path, served: str) -> None:
    handlers: dict[str, Any] = plugin_handlers(FileInstancePlugin(tmp_path / "files"))
    for name in ("Plugin.Implements", HANDSHAKE):
        if name != served:
            del handlers[name]  # as a Go plugin of that version: the other is unknown
    with HttpRpcServer(tmp_path / "instance-go", handlers) as server:
        assert probe_http(server.path) == [{"Name": "Instance", "Version": "0.1.0"}]
        remote = connect_plugin("instance-go", server.endpoint, timeout=10)
        try:
            assert [api["Name"] for api in remote.implements()] == ["Instance"]
            remote.require("Instance")
            made = remote.provision(Spec(tags={"infrakit.group": "g"}))
            assert [d.id for d in remote.describe_instances({"infrakit.group": "g"})] == [made]
        finally:
            remote.close()
