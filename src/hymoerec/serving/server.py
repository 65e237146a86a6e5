"""Running the API under uvicorn, with limits that keep one client from starving the others.

uvicorn's own settings cover idle keep-alive connections (``timeout_keep_alive``), the
size of a request head (``h11_max_incomplete_event_size``), the listen backlog and the
graceful-shutdown wait. Two limits it lacks are added by a small subclass of its HTTP
protocol (``_GuardedH11``):

- a read deadline: a connection that has not sent a whole request (head and body)
  ``read_timeout`` seconds after it opened (or after its previous response) is closed.
  uvicorn starts no timer on a fresh connection and restarts its keep-alive timer on
  every byte, so a client that connects and stays silent, or sends a byte every few
  seconds, would otherwise hold its connection forever;
- a connection cap enforced as connections arrive. A connection beyond
  ``max_connections`` closes the oldest connection that still owes a request (idle or
  slow: nothing of it is being computed); when every connection has a request in
  progress, the newcomer gets a 503 and is closed at once. uvicorn's
  ``limit_concurrency`` only answers 503 to requests, so the idle connections it has
  accepted would keep their file descriptors and lock everyone out. The cap is checked
  against the process's open-file limit before the server starts.
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
from dataclasses import dataclass, field
from typing import Any

from hymoerec.recommend import Recommender
from hymoerec.serving.app import MAX_BODY_BYTES, create_app

API_KEY_ENV = "HYMOEREC_API_KEY"
MIN_API_KEY_CHARS = 16
MAX_HEAD_BYTES = 16 * 1024  # request line and headers; more gets a 400
RESERVED_FDS = 64  # descriptors kept for the process itself (libraries, logs, the listener)
SHUTDOWN_SECONDS = 10  # graceful shutdown: how long requests in flight may finish
_BUSY_BODY = b'{"detail":"too many open connections"}'
# written to a connection over the cap before its request arrives, then the connection closes
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


@dataclass(frozen=True)
class ServeOptions:
    """What ``hymoerec serve`` runs with; every field is validated on construction."""

    host: str = "127.0.0.1"  # loopback: nothing else on the network can reach the service
    port: int = 8000
    max_batch: int = 64  # most requests answered by one model call
    max_connections: int = 256  # open connections at once (see the module's docstring)
    keep_alive: int = 5  # seconds an idle keep-alive connection stays open
    read_timeout: float = 10.0  # seconds a connection has to send a whole request
    max_body_bytes: int = MAX_BODY_BYTES  # larger request bodies get 413, unread
    backlog: int = 2048  # connections the kernel queues before accepting them (no fd used)
    api_key: str | None = field(default=None, repr=False)  # required in X-API-Key when set

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host: must not be empty")
        _at_least("port (--port)", self.port, 1)
        if self.port > 65535:
            raise ValueError(f"port (--port) {self.port}: must be between 1 and 65535")
        _at_least("max_batch (--max-batch)", self.max_batch, 1)
        _at_least("max_connections (--max-connections)", self.max_connections, 1)
        _at_least("keep_alive (--keep-alive)", self.keep_alive, 1)
        if not (math.isfinite(self.read_timeout) and self.read_timeout > 0):
            raise ValueError(
                f"read_timeout (--read-timeout) {self.read_timeout}: must be a positive "
                "number of seconds"
            )
        _at_least("max_body_bytes (--max-body-bytes)", self.max_body_bytes, 1024)
        _at_least("backlog (--backlog)", self.backlog, 1)
        limit = _open_file_limit()
        if limit is not None and self.max_connections > limit - RESERVED_FDS:
            raise ValueError(
                f"max_connections (--max-connections) {self.max_connections}: the open-file "
                f"limit is {limit} (ulimit -n) and {RESERVED_FDS} are kept for the process; "
                f"lower the cap to {max(1, limit - RESERVED_FDS)} or raise the limit"
            )
        key = self.api_key
        if key is not None and (
            len(key) < MIN_API_KEY_CHARS or not all("!" <= c <= "~" for c in key)
        ):
            raise ValueError(
                f"the API key (${API_KEY_ENV}) must be at least {MIN_API_KEY_CHARS} printable "
                "ASCII characters without spaces"
            )


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} {value}: must be an integer of at least {low}")


def _open_file_limit() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def bind(options: ServeOptions) -> socket.socket:
    """The listening socket, bound before anything announces the service (errors: OSError)."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (else 40 ms
    # delayed-ACK stalls between a response's head and body)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((options.host, options.port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {options.host}:{options.port}: {error}") from error
    except (OverflowError, TypeError) as error:  # e.g. a host name that is not text
        sock.close()
        raise ValueError(f"cannot listen on {options.host}:{options.port}: {error}") from error
    return sock


def _guarded_protocol(options: ServeOptions) -> type[Any]:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _GuardedH11(H11Protocol):
        """uvicorn's HTTP/1.1 protocol plus the connection cap and the read deadline."""

        _deadline: asyncio.TimerHandle | None = None
        waiting_since: float | None = None  # set while the client owes a (whole) request
        _discarded = 0  # body bytes received after the answer went out

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_waiting()
            open_now = [c for c in self.connections if not c.transport.is_closing()]
            if len(open_now) > options.max_connections:
                waiting = [c for c in open_now if isinstance(c, _GuardedH11) and c.waiting_since]
                waiting = [c for c in waiting if c is not self]
                if waiting:  # make room: drop the connection that has owed a request longest
                    min(waiting, key=lambda c: c.waiting_since or 0.0)._too_slow()
                else:  # every other connection has a request in progress: truly busy
                    transport.write(BUSY)
                    transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is h11.DONE:  # the whole request has arrived
                self._stop_waiting()

        def data_received(self, data: bytes) -> None:
            if self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY:
                # answered (a 413) before the body arrived: uvicorn discards the rest of it;
                # past another max_body_bytes, close rather than read on
                self._discarded += len(data)
                if self._discarded > options.max_body_bytes:
                    self._too_slow()
                    return
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._discarded = 0
            self._start_waiting()  # the next request has the same deadline
            super().on_response_complete()  # may read a pipelined request: stops again

        def _start_waiting(self) -> None:
            self._stop_waiting()
            self.waiting_since = self.loop.time()
            self._deadline = self.loop.call_later(options.read_timeout, self._too_slow)

        def _stop_waiting(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline = self.waiting_since = None

        def _too_slow(self) -> None:
            self._stop_waiting()
            if not self.transport.is_closing():
                self.transport.close()

    return _GuardedH11


def uvicorn_config(recommender: Recommender, options: ServeOptions) -> Any:
    """The ``uvicorn.Config`` for ``options`` (a function of its own so tests can run it)."""
    import uvicorn

    app = create_app(recommender, options.max_batch, options.max_body_bytes, options.api_key)
    return uvicorn.Config(
        app,
        http=_guarded_protocol(options),
        timeout_keep_alive=options.keep_alive,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=options.backlog,
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        log_level="warning",
        access_log=False,
    )


def serve(
    recommender: Recommender, options: ServeOptions, sock: socket.socket | None = None
) -> None:
    """Serve until interrupted, on ``sock`` (from ``bind``) or on a socket bound here."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(recommender, options))
    server.run(sockets=[sock or bind(options)])
    if not server.started:  # e.g. the app's startup failed; uvicorn has logged why
        sys.exit(1)
