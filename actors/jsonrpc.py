"""JSON-RPC 2.0 envelopes as bytes: parse requests and replies, encode them.

Strict on input (UTF-8 only, no NaN/Infinity, integers within 64 bits, no duplicate keys, at
most `MAX_NESTING` levels, a request must be an object with the right types: see
actors/strict_json.py) so that anything a client in another language sends is either valid
JSON-RPC or answered with the standard error code. Encoders are compact UTF-8.

orjson does the JSON: the codec is most of a round trip's Python work, and orjson is five to
fifteen times faster than the standard library's encoder and decoder here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from actors.rpc_errors import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR
from actors.strict_json import MAX_DEPTH, JsonError
from actors.strict_json import loads as strict_loads

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_NESTING",
    "BadMessage",
    "Reply",
    "Request",
    "encode_error",
    "encode_request",
    "encode_result",
    "parse_reply",
    "parse_request",
    "request_id",
]

RequestId = int | str | None


_ENCODE_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: x} encodes as {"1": x}, as the stdlib does

MAX_MESSAGE_BYTES = 1 << 20
"""1 MiB: the largest request a server takes, and a client sends, by default."""
MAX_NESTING = MAX_DEPTH + 8
"""Levels a request may nest: a document of `MAX_DEPTH` levels inside the envelope and params."""


class BadMessage(Exception):
    """A message that is not a valid request; the server answers it with this error."""

    def __init__(self, code: int, message: str, id: RequestId = None) -> None:
        super().__init__(code, message, id)
        self.code = code
        self.message = message
        self.id = id


class Request(NamedTuple):
    """A parsed JSON-RPC request; `notification` means it had no id and gets no reply."""

    method: str
    params: dict[str, Any]
    id: RequestId
    notification: bool


class Reply(NamedTuple):
    """A parsed JSON-RPC reply: either `error` (code, message, data) or `result` is set."""

    id: RequestId
    result: Any = None
    error: tuple[int, str, Any] | None = None


def _decode(body: bytes) -> Any:
    """A reply's JSON (from a server we called: orjson's own rules are enough)."""
    if not body:
        raise BadMessage(PARSE_ERROR, "parse error: empty message")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:  # also bad UTF-8, NaN, nesting, huge numbers
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as bad:  # orjson's own words for this mislead ("surrogates")
            message = f"parse error: not UTF-8 ({bad.reason} at byte {bad.start})"
            raise BadMessage(PARSE_ERROR, message) from None
        raise BadMessage(PARSE_ERROR, f"parse error: {error}") from None


def _decode_request(body: bytes) -> Any:
    """A request's JSON, strictly: what a server hands to its handlers is never ambiguous."""
    if not body:
        raise BadMessage(PARSE_ERROR, "parse error: empty message")
    try:
        return strict_loads(body, max_depth=MAX_NESTING)
    except JsonError as error:
        text = "; ".join(f"{path}: {fault}" if path else fault for path, fault in error.problems)
        if not error.well_formed:
            raise BadMessage(PARSE_ERROR, f"parse error: {text}") from None
        document = error.document if isinstance(error.document, dict) else {}
        id = document.get("id")
        id = id if _valid_id(id) else None
        in_params = all(path.startswith("params") for path, _ in error.problems)
        code, kind = (
            (INVALID_PARAMS, "invalid params")
            if in_params
            else (INVALID_REQUEST, "invalid request")
        )
        raise BadMessage(code, f"{kind}: {text}", id) from None


def request_id(body: bytes) -> RequestId:
    """The id of a request, if it can be read at all (to answer one that is refused whole)."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    id = message.get("id") if isinstance(message, dict) else None
    return id if _valid_id(id) else None


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def parse_request(body: bytes) -> Request:
    """Parse one request message; raise `BadMessage` with the code and id to answer with."""
    message = _decode_request(body)
    if isinstance(message, list):
        raise BadMessage(INVALID_REQUEST, "batch requests are not supported")
    if not isinstance(message, dict):
        raise BadMessage(INVALID_REQUEST, "invalid request: not a JSON object")
    notification = "id" not in message
    id = message.get("id")
    if not _valid_id(id):
        raise BadMessage(INVALID_REQUEST, "invalid request: id must be a string, integer or null")
    if message.get("jsonrpc") != "2.0":
        raise BadMessage(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', id)
    method = message.get("method")
    if not isinstance(method, str):
        raise BadMessage(INVALID_REQUEST, 'invalid request: "method" must be a string', id)
    params = message.get("params", {})
    if isinstance(params, list):
        raise BadMessage(INVALID_PARAMS, "invalid params: pass an object, not an array", id)
    if not isinstance(params, dict):
        raise BadMessage(INVALID_PARAMS, "invalid params: must be an object", id)
    return Request(method, params, id, notification)


def parse_reply(body: bytes) -> Reply:
    """Parse one reply message; raise `BadMessage` if it is not a JSON-RPC reply."""
    message = _decode(body)
    if not isinstance(message, dict) or not _valid_id(message.get("id")):
        raise BadMessage(INVALID_REQUEST, "not a JSON-RPC reply")
    id = message.get("id")
    if "error" in message:
        error = message["error"]
        if not isinstance(error, dict):
            raise BadMessage(INVALID_REQUEST, "reply has a malformed error", id)
        code = error.get("code")
        text = error.get("message")
        return Reply(
            id,
            error=(
                code if isinstance(code, int) else INVALID_REQUEST,
                text if isinstance(text, str) else repr(text),
                error.get("data"),
            ),
        )
    if "result" not in message:
        raise BadMessage(INVALID_REQUEST, "reply has neither result nor error", id)
    return Reply(id, result=message["result"])


def encode_request(id: RequestId, method: str, params: Any, notification: bool = False) -> bytes:
    """Encode a request (a notification if `notification`); raises TypeError if params do not
    encode."""
    if notification:
        message = {"jsonrpc": "2.0", "method": method, "params": params}
    else:
        message = {"jsonrpc": "2.0", "id": id, "method": method, "params": params}
    return _encode(message)


def encode_result(id: RequestId, result: Any) -> bytes:
    """Encode a success reply; raises TypeError if the result does not encode."""
    return _encode({"jsonrpc": "2.0", "id": id, "result": result})


def encode_error(id: RequestId, code: int, message: str, data: Any = None) -> bytes:
    """Encode an error reply; data that does not encode is replaced by its repr."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    try:
        return _encode({"jsonrpc": "2.0", "id": id, "error": error})
    except TypeError:
        error["data"] = repr(data)
        return _encode({"jsonrpc": "2.0", "id": id, "error": error})


def _encode(message: dict[str, Any]) -> bytes:
    """NaN and infinities encode as null; anything else not JSON raises TypeError."""
    return orjson.dumps(message, option=_ENCODE_OPTIONS)
