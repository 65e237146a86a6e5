"""`hymoerec serve`'s options and the connection limits of the real server (uvicorn)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from hymoerec.cli import main
from hymoerec.recommend import Recommender
from hymoerec.serving.server import BUSY, ServeOptions
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
        ({"header_timeout": float("nan")}, "header_timeout (--header-timeout) nan"),
        ({"header_timeout": -1.0}, "must be a positive number of seconds"),
        ({"max_body_bytes": 10}, "max_body_bytes (--max-body-bytes) 10"),
        ({"backlog": 0}, "backlog (--backlog) 0"),
        ({"api_key": "short"}, "at least 16 printable ASCII characters"),
        ({"api_key": "a key with spaces in it"}, "without spaces"),
        ({"host": ""}, "host: must not be empty"),
    ],
)
def test_options_are_checked_on_construction(fields: dict, message: str) -> None:
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
        (["--header-timeout", "0"], "--header-timeout) 0.0"),
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


def test_silent_and_slow_connections_are_closed_at_the_header_deadline(
    small_recommender: Recommender,
) -> None:
    options = ServeOptions(port=free_port(), header_timeout=0.5, keep_alive=30)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        began = time.monotonic()
        try:  # one byte every 0.1 s: the deadline is not reset by data
            for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n":
                slow.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - began < 2.0  # cut off well before the 3 s drip ended
        assert _closed_within(silent, 2.0)[0] and _closed_within(slow, 2.0)[0]
        # a client that sends its request in time is answered, and its keep-alive
        # connection then has the deadline again for the next request
        with socket.create_connection(("127.0.0.1", port)) as good:
            good.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            closed, answer = _closed_within(good, 2.0)
            assert answer.startswith(b"HTTP/1.1 200") and closed


def test_connections_over_the_cap_get_503_and_the_others_are_served(
    small_recommender: Recommender,
) -> None:
    cap = 20
    options = ServeOptions(port=free_port(), max_connections=cap, header_timeout=30)
    with live_server(small_recommender, options) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(cap - 1)]
        try:
            time.sleep(0.2)  # let the server accept them all
            # the last free slot still serves a legitimate client
            with httpx.Client(base_url=url, timeout=5) as legit:
                assert legit.get("/health").status_code == 200
                # with every slot taken, a new connection is told so and closed at once
                with socket.create_connection(("127.0.0.1", port)) as extra:
                    closed, answer = _closed_within(extra, 2.0)
                    assert closed and answer == BUSY
                assert legit.get("/health").status_code == 200  # still served
        finally:
            for sock in idle:
                sock.close()
