"""What both ends of every contract share: the version, the application error codes, reading
params (server side), and the typed clients' base, which raises a remote failure as the SPI's
own error (client side)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Protocol

from actors.rpc_errors import METHOD_NOT_FOUND, RemoteError, RpcClosed, RpcError, RpcTimeout
from infrakit.spi.errors import PluginError, SpecError, ValidationError

Handler = Callable[[dict[str, Any]], Any]

API_VERSION = "0.1.0"

# Application error codes (JSON-RPC reserves -32000..-32099 for servers).
PLUGIN_ERROR = -32000  # the plugin failed; the message says why
INVALID_SPEC = -32010  # data: {"Problems": [[path, fault], ...]}
NOT_LEADER = -32011  # data: {"Leader": location or null}
GROUP_NOT_FOUND = -32012
BAD_REVISION = -32013  # a stale expected revision, or one not kept; data: {"Current": n}

# A handshake is small: a plugin that does not answer it this fast is not there.
HANDSHAKE_TIMEOUT = 3.0

HANDSHAKE = "Handshake.Implements"
"""The handshake every server answers (`Plugin.Implements` is its older name)."""
OLD_HANDSHAKE = "Plugin.Implements"
"""The handshake's name in Go InfraKit v0.1, the only one its plugins answer."""


def api(name: str) -> dict[str, str]:
    """An interface as the handshake names it: `{"Name": name, "Version": API_VERSION}`."""
    return {"Name": name, "Version": API_VERSION}


def handshake(apis: list[dict[str, str]]) -> dict[str, Handler]:
    """The handshake's handlers (and its older name), answering that the server implements
    `apis`."""

    def implements(_p: dict[str, Any]) -> Any:
        return {"APIs": [dict(a) for a in apis]}

    return {HANDSHAKE: implements, OLD_HANDSHAKE: implements}


# -- server side ------------------------------------------------------------------------------


def param(params: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`params[key]`, matching the key in any letter case as Go's JSON decoding did."""
    if key in params:
        return params[key]
    wanted = key.lower()
    for name, value in params.items():
        if name.lower() == wanted:
            return value
    return default


def object_param(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A required object param, or invalid params."""
    value = param(params, key)
    if not isinstance(value, dict):
        raise RpcError(-32602, f"params.{key} must be an object")
    return value


def string_param(params: Mapping[str, Any], key: str) -> str:
    """A required non-empty string param, or invalid params."""
    value = param(params, key)
    if not isinstance(value, str) or not value:
        raise RpcError(-32602, f"params.{key} must be a non-empty string")
    return value


def string_map_param(params: Mapping[str, Any], key: str) -> dict[str, str]:
    """An optional object param (null or missing: empty) as a str -> str dict."""
    value = param(params, key) or {}
    if not isinstance(value, dict):
        raise RpcError(-32602, f"params.{key} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def plugin_call(call: Callable[[], Any]) -> Any:
    """Run a served object's method, turning the SPI's errors into JSON-RPC errors with useful
    messages (a refused spec or properties keeps every fault with its path)."""
    try:
        return call()
    except (ValidationError, SpecError) as error:
        problems = [[path, reason] for path, reason in error.problems]
        raise RpcError(INVALID_SPEC, str(error), {"Problems": problems}) from None
    except PluginError as error:
        raise RpcError(PLUGIN_ERROR, str(error)) from None


# -- client side ------------------------------------------------------------------------------


class Unreachable(PluginError):
    """The server did not answer in time, or the connection was closed."""


class Unsupported(PluginError):
    """The server does not serve the method (an older version, or another implementation)."""


def spec_problems(error: RemoteError) -> list[tuple[str, str]]:
    """The (path, fault) pairs of an INVALID_SPEC error; anything malformed is kept as text."""
    data = error.data if isinstance(error.data, dict) else {}
    found = param(data, "Problems")
    problems = []
    for problem in found if isinstance(found, list) else []:
        if isinstance(problem, list | tuple) and len(problem) == 2:
            problems.append((str(problem[0]), str(problem[1])))
        else:
            problems.append(("", str(problem)))
    return problems or [("", error.message)]


class Ref(Protocol):
    """What a typed client needs of its connection: `RemoteRef` (a long-lived client, shared
    by threads), `BlockingRef` (a short-lived one, e.g. the CLI's) or `HttpRef`."""

    @property
    def endpoint(self) -> str: ...

    @property
    def retries(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any: ...

    def close(self, timeout: float = 5.0) -> None: ...


class Client:
    """The base of the typed clients: a `Ref`, the server's handshake (asked once), and calls
    whose failures are raised as the SPI's errors: `ValidationError` with every fault,
    `Unsupported`, `Unreachable` or `PluginError`, their messages after `label` if given.

    `IDEMPOTENT` names the calls a client may resend when a reply is lost (its `Ref` needs
    them).
    """

    IDEMPOTENT: ClassVar[frozenset[str]] = frozenset({HANDSHAKE, OLD_HANDSHAKE})

    def __init__(self, ref: Ref, label: str = "") -> None:
        self.ref = ref
        self._label = label
        self._apis: list[dict[str, str]] | None = None

    @property
    def endpoint(self) -> str:
        return self.ref.endpoint

    def implements(self) -> list[dict[str, str]]:
        """The interfaces the server implements (its handshake, asked once)."""
        if self._apis is None:
            try:
                result = self._call(HANDSHAKE, {}, timeout=self.quick())
            except Unsupported:  # Go InfraKit v0.1's plugins know only the older name
                result = self._call(OLD_HANDSHAKE, {}, timeout=self.quick())
            self._apis = [dict(api) for api in result.get("APIs") or []]
        return self._apis

    def serves(self, interface: str) -> bool:
        """Whether the handshake lists `interface` (at any version)."""
        return any(api.get("Name") == interface for api in self.implements())

    def require(self, interface: str) -> None:
        """Raise ValidationError unless the server implements `interface` at our version
        (PluginError if it does not answer)."""
        for api in self.implements():
            if api.get("Name") == interface:
                if api.get("Version") != API_VERSION:
                    raise ValidationError(
                        f"Plugin supports {interface} interface version {api.get('Version')},"
                        f" client requires {API_VERSION}"
                    )
                return
        raise ValidationError(f"Plugin does not support interface {{{interface} {API_VERSION}}}")

    def quick(self) -> float:
        """The per-attempt timeout of a call that must be answered within HANDSHAKE_TIMEOUT
        in all when the connection is down (a server not started yet, or gone)."""
        if self.ref.alive:
            return HANDSHAKE_TIMEOUT
        return HANDSHAKE_TIMEOUT / (1 + self.ref.retries)

    def close(self, timeout: float = 5.0) -> None:
        self.ref.close(timeout=timeout)

    def _call(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        try:
            return self.ref.call(method, params, timeout=timeout)
        except RemoteError as error:
            raise self._error(error) from None
        except (RpcTimeout, RpcClosed) as error:
            raise Unreachable(self._say(str(error))) from None

    def _error(self, error: RemoteError) -> Exception:
        """The SPI's error for an error reply."""
        if error.code == INVALID_SPEC:
            return ValidationError.of(spec_problems(error))
        if error.code == METHOD_NOT_FOUND:
            return Unsupported(self._say(error.message))
        return PluginError(self._say(error.message))

    def _say(self, message: str) -> str:
        return f"{self._label}: {message}" if self._label else message
