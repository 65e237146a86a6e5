"""What stands between the network and the API: body size, API key, strict JSON, safe errors.

- ``BodyLimit`` answers 413 before the body is read when ``Content-Length`` is too large,
  and stops reading a body sent without one (chunked) once it passes the limit, so a huge
  upload is never buffered or parsed on the event loop.
- ``ApiKey`` answers 401 when a key is configured and the request does not carry it;
  the paths in ``OPEN_PATHS`` stay open.
- ``strict_json`` parses what JSON allows and nothing more: no ``NaN`` / ``Infinity``,
  no number that overflows a float, valid UTF-8 only, bounded nesting. Every failure is a
  ``json.JSONDecodeError``, which FastAPI answers with 422 ``json_invalid``.
- ``excerpt`` makes any input safe to put in an error body: short, and JSON-compliant.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = "X-API-Key"
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json"})
EXCERPT_CHARS = 40  # longest piece of a client's input echoed back in an error


async def _send_json(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body reading passes it on."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body larger than {max_bytes} bytes")


class BodyLimit:
    """413 for request bodies over ``max_bytes``, decided as early as possible."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if started:
                raise
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        # the connection stays open, so that the client can read this answer while it is
        # still sending; the server discards what follows (bounded, see server.py)
        await _send_json(send, 413, _TooLarge(self.max_bytes).detail, [])


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # the HTTP server has already rejected values that are not digits
            return int(value) if value.isdigit() else None
    return None


class ApiKey:
    """401 unless the request's ``X-API-Key`` header equals ``key``."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app = app
        self.key = key.encode()
        self.header = API_KEY_HEADER.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            given = next((v for k, v in scope["headers"] if k == self.header), b"")
            if not hmac.compare_digest(given, self.key):  # constant time: no guessing by timing
                detail = f"missing or wrong {API_KEY_HEADER} header"
                await _send_json(send, 401, detail, [(b"www-authenticate", b"ApiKey")])
                return
        await self.app(scope, receive, send)


def _reject_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not valid JSON", "", 0)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 parses to inf, which no JSON answer can carry
        raise json.JSONDecodeError(f"number {text[:EXCERPT_CHARS]} is out of range", "", 0)
    return value


def _bounded_int(text: str) -> int:
    try:
        return int(text)
    except ValueError as error:  # more digits than Python converts (4300 by default)
        raise json.JSONDecodeError(f"integer of {len(text)} digits", "", 0) from error


def strict_json(body: bytes) -> Any:
    """``json.loads`` that rejects what the JSON standard does not allow."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError(f"invalid UTF-8 at byte {error.start}", "", 0) from error
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except RecursionError as error:
        raise json.JSONDecodeError("nested too deeply", "", 0) from error


def excerpt(value: Any, chars: int = EXCERPT_CHARS) -> Any:
    """A short, JSON-compliant stand-in for a piece of client input."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10**15 else f"<integer of {len(str(abs(value)))} digits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes):
        value = value[: chars * 4].decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return f"<array of {len(value)} items>"
    if isinstance(value, dict):
        return f"<object with {len(value)} keys>"
    text = str(value)
    short = text[:chars] + ("..." if len(text) > chars else "")
    # a lone surrogate (JSON "\ud800") cannot be encoded in a response: spell it out
    return short.encode("utf-8", "backslashreplace").decode("utf-8")
