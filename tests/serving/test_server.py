"""`hymoerec serve`'s options and the connection limits of the real server (uvicorn)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from hymoerec.cli import main
from hymoerec.recommend import Recommender
from hymoerec.serving.server import BUSY, ServeOptions, _open_file_limit, bind
from tests.serving.conftest import free_port, live_server


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port": 99999}, "port (--port) 99999: must be between 1 and 65535"),
        ({"port": 0}, "port (--port) 0: must be an integer of at least 1"),
        ({"max_batch": 0}, "max_batch (--max-batch) 0: must be an integer of at least 1"),
        ({"max_connections": 0}, "max_connections (--max-connections) 0"),
        ({"max_connections": 10**9}, "the open-file limit is"),
        ({"keep_alive": 0}, "keep_alive (--keep-alive) 0"),
        ({"read_timeout": float("nan")}, "read_timeout (--read-timeout) nan"),
        ({"read_timeout": -1.0}, "must be a positive number of seconds"),
        ({"max_body_bytes": 10}, "max_body_bytes (--max-body-bytes) 10"),
        ({"backlog": 0}, "backlog (--backlog) 0"),
        ({"api_key": "short"}, "at least 16 printable ASCII characters"),
        ({"api_key": "a key with spaces in it"}, "without spaces"),
        ({"host": ""}, "host: must not be empty"),
    ],
)
def test_options_are_checked_on_construction(fields: dict, message: str) -> None:
    if "open-file" in message and _open_file_limit() is None:
        pytest.skip("no open-file limit on this machine")
    with pytest.raises(ValueError) as error:
        ServeOptions(**fields)
    assert message in str(error.value)


def test_the_api_key_is_not_printed_in_the_options() -> None:
    assert "secret" not in repr(ServeOptions(api_key="secret" * 4))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "99999"], "--port) 99999: must be between 1 and 65535"),
        (["--max-batch", "0"], "--max-batch) 0: must be an integer of at least 1"),
        (["--threads", "-1"], "--threads -1"),
        (["--read-timeout", "0"], "--read-timeout) 0.0"),
    ],
)
def test_bad_options_exit_2_before_anything_starts(
    small_run: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["serve", str(small_run), *argv]) == 2
    out, err = capsys.readouterr()
    assert message in err and err.count("\n") == 1  # one line, no traceback
    assert "serving" not in out


def test_a_port_in_use_is_a_clear_error(
    small_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("HYMOEREC_API_KEY", "")
        assert main(["serve", str(small_run), "--port", str(port)]) == 2
    out, err = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "serving" not in out


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(whether the server closed the connection within ``seconds``, what it sent)."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def test_silent_and_slow_connections_are_closed_at_the_read_deadline(
    small_recommender: Recommender,
) -> None:
    options = ServeOptions(port=free_port(), read_timeout=0.5, keep_alive=30)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port))
        partial = socket.create_connection(("127.0.0.1", port))  # head, then half a body
        partial.sendall(b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{")
        slow = socket.create_connection(("127.0.0.1", port))
        began = time.monotonic()
        try:  # one byte every 0.1 s: the deadline is not reset by data
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
                slow.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - began < 2.0  # cut off well before the 3 s drip ended
        for sock in (silent, partial, slow):
            assert _closed_within(sock, 2.0)[0]
        # a client that sends its request in time is answered, and its keep-alive
        # connection then has the deadline again for the next request
        with socket.create_connection(("127.0.0.1", port)) as good:
            good.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, answer = _closed_within(good, 2.0)
            assert answer.startswith(b"HTTP/1.1 200") and closed


def test_a_connection_over_the_cap_displaces_the_longest_idle_one(
    small_recommender: Recommender,
) -> None:
    cap = 20
    options = ServeOptions(port=free_port(), max_connections=cap, read_timeout=30)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        try:
            time.sleep(0.3)  # let the server accept them all: every slot is taken
            with httpx.Client(base_url=url, timeout=5) as legit:
                assert legit.get("/health").status_code == 200
            closed, answer = _closed_within(idle[0], 2.0)
            assert closed and answer == b""  # the oldest idle connection made room
            assert not _closed_within(idle[-1], 0.2)[0]  # the younger ones stay
        finally:
            for sock in idle:
                sock.close()


def test_a_connection_over_the_cap_gets_503_when_all_are_busy(
    small_recommender: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    compute = small_recommender.recommend_many

    def slow(*args: object, **kwargs: object) -> object:
        time.sleep(1.0)
        return compute(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(small_recommender, "recommend_many", slow)
    cap = 3
    body = b'{"history": ["50"], "k": 2}'
    request = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    request += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    options = ServeOptions(port=free_port(), max_connections=cap)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        busy = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap)]
        try:
            for sock in busy:
                sock.sendall(request)
            time.sleep(0.3)  # all three requests are in progress
            with socket.create_connection(("127.0.0.1", port)) as extra:
                closed, answer = _closed_within(extra, 2.0)
                assert closed and answer == BUSY
            for sock in busy:  # the busy ones are answered in full
                sock.settimeout(10)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in busy:
                sock.close()


def test_a_large_upload_gets_its_413_and_only_a_bounded_read(
    small_recommender: Recommender,
) -> None:
    options = ServeOptions(port=free_port(), max_body_bytes=4096)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as upload:
            upload.sendall(
                b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"
            )
            upload.sendall(b"[" * 1000)
            upload.settimeout(5)
            answer = b""  # sent before the body: no need to upload it all
            while not answer.endswith(b"}"):
                answer += upload.recv(4096)
            assert answer.startswith(b"HTTP/1.1 413") and b"larger than 4096 bytes" in answer
            with pytest.raises(OSError):  # past another 4096 bytes the server stops reading
                for _ in range(200):
                    upload.sendall(b"[" * 10_000)
                    time.sleep(0.005)


def test_accepted_connections_send_without_delay() -> None:
    """TCP_NODELAY on every accepted connection: without it a response written in two parts
    (head, body) waits ~40 ms for the client's delayed ACK."""
    import asyncio

    async def accepted_nodelay() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        sock = bind(ServeOptions(port=free_port()))
        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            writer.close()
            return await asyncio.wait_for(accepted, 5)

    assert asyncio.run(accepted_nodelay()) == 1
