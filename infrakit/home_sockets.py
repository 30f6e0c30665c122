"""The Group API on a runtime's own ipc:// sockets (its home's, and any `Manager.Listen` ones),
served whether it leads or follows, so that `infrakit group ...` answers on every host.

Two runtimes on one home never fight over a socket: one that another live server holds is
left to it and claimed once free (checked every `every` seconds), and a follower leaves the
socket the leader advertises, since the leader is then on this home and serves it itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from actors.remote import RpcServer
from actors.rpc_errors import AddressInUse

log = logging.getLogger(__name__)


class HomeSockets:
    """Serves the Group API, through `serve(endpoint)`, at each of `endpoints` that no live
    server holds, between `start` and `stop`; `leader_elsewhere()` is where the leader is
    when this runtime does not lead (None when it does, or none is known)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        serve: Callable[[str], RpcServer],
        leader_elsewhere: Callable[[], str | None],
        every: float,
    ) -> None:
        self._endpoints = tuple(endpoints)
        self._serve = serve
        self._leader_elsewhere = leader_elsewhere
        self._every = every
        self._servers: dict[str, RpcServer] = {}
        self._lock = threading.Lock()  # one claim at a time, and none once stopped
        self._stop = threading.Event()
        self._stop.set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Claim what is free now, then keep claiming on a thread of its own."""
        self._stop.clear()
        self.claim()
        self._thread = threading.Thread(target=self._keep, name="group-sockets", daemon=True)
        self._thread.start()

    def claim(self) -> None:
        """Serve each endpoint that no live server holds (say, after the runtime on this home
        that held it stopped or died), and give up the one the leader advertises."""
        with self._lock:
            if self._stop.is_set():
                return
            leader = self._leader_elsewhere()
            for endpoint in self._endpoints:
                server = self._servers.get(endpoint)
                if endpoint == leader:
                    if server is not None:
                        log.info("the leader serves at %s, on this home: leaving it", endpoint)
                        del self._servers[endpoint]
                        server.stop()
                    continue
                if server is not None and server.running:
                    continue
                try:
                    self._servers[endpoint] = self._serve(endpoint)
                except AddressInUse:
                    continue  # another runtime on this home serves it: not ours to take
                except OSError as error:
                    log.error("cannot serve the Group API at %s: %s", endpoint, error)

    def servers(self) -> list[RpcServer]:
        """The servers running now (a runtime checks that none died)."""
        with self._lock:
            return list(self._servers.values())

    def stop(self) -> None:
        """Stop claiming, and stop every server."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10.0)
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.stop()

    def _keep(self) -> None:
        """Claim every `every` seconds until stopped; a failure is logged, never fatal."""
        while not self._stop.wait(self._every):
            try:
                self.claim()
            except Exception:
                log.exception("cannot look after the Group API's sockets")
