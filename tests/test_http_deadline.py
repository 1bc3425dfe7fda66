"""Issue 27: an http(s) shard, sidecar or manifest is read within one deadline, all tries together, and the first
stall of a process is reported in one line. The servers here listen on 127.0.0.1, answer a bounded number of
connections with a bounded number of bytes, and stop with the test."""
import socket
import threading
import time

import pytest

import shards.files as files

REQUEST_END = b"\r\n\r\n"


class DripServer:
    """Accepts up to `max_connections`, reads each request, sends `headers`, then `body` one byte every `gap_s`
    (all of it at once when gap_s is 0) and closes; with headers=None it holds each connection open, silent."""

    def __init__(self, headers: bytes | None, body: bytes, gap_s: float, max_connections: int = 4):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.headers, self.body, self.gap_s = headers, body, gap_s
        self.max_connections = max_connections
        self.accepted, self.sent, self.held = 0, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/train/train-000000.tar"

    def serve(self) -> None:
        while not self.stop.is_set() and self.accepted < self.max_connections:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.headers is None:
                self.held.append(conn)  # silent: read nothing, answer nothing, close at the end
                continue
            with conn:
                self.answer(conn)

    def answer(self, conn: socket.socket) -> None:
        conn.settimeout(1.0)
        request = b""
        try:
            while REQUEST_END not in request:
                request += conn.recv(4096) or b"x" * 4
            conn.sendall(self.headers)
            if not self.gap_s:
                conn.sendall(self.body)
                self.sent += len(self.body)
                return
            for byte in self.body:
                if self.stop.wait(self.gap_s):
                    return
                conn.sendall(bytes([byte]))
                self.sent += 1
        except OSError:
            return  # the client gave up

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.listener.close()


def headers(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test starts as a new reader process: no stall reported yet, no deadline in the environment."""
    monkeypatch.setattr(files, "_stall_reported", False)
    monkeypatch.setattr(files, "HTTP_PAUSE_S", 0.0)
    monkeypatch.delenv(files.HTTP_DEADLINE_ENV, raising=False)


def test_a_server_that_drips_one_byte_at_a_time_is_cut_at_the_deadline(monkeypatch, capfd):
    """Headers, then a byte every 50 ms: no single read ever times out, so only the deadline ends it."""
    monkeypatch.setattr(files, "HTTP_TIMEOUT_S", 5.0)
    monkeypatch.setenv(files.HTTP_DEADLINE_ENV, "0.5")
    with DripServer(headers(200), bytes(200), gap_s=0.05) as server:
        with pytest.raises(OSError) as err:
            files.read_url(server.url)
    message = str(err.value)
    assert message.startswith(server.url) and "0.5 s deadline" in message and "\n" not in message, message
    assert server.accepted == 1 and 0 < server.sent < 200  # one try, cut before the end; no retry past the deadline
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {server.url}: try 1 of 3 failed"), lines


def test_a_silent_server_is_cut_at_the_deadline_and_only_the_first_stall_is_reported(monkeypatch, capfd):
    monkeypatch.setattr(files, "HTTP_TIMEOUT_S", 5.0)
    with DripServer(None, b"", gap_s=0.0) as server:
        for _ in range(2):
            with pytest.raises(OSError, match=r"no answer after 1 try .*0.3 s deadline"):
                files.read_http(server.url, deadline_s=0.3)
    assert server.accepted == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "later stalls are not reported" in lines[0], lines


def test_whole_answers_are_read_and_a_cut_answer_is_retried_then_named(monkeypatch, capfd):
    body = bytes(range(256)) * 20
    with DripServer(headers(len(body)), body, gap_s=0.0) as server:
        assert files.read_http(server.url, deadline_s=10.0) == body
    assert capfd.readouterr().err == ""
    with DripServer(headers(len(body)), body[:1000], gap_s=0.0) as server:  # Content-Length promises more
        with pytest.raises(OSError, match=r"no answer after 3 tries .*IncompleteRead"):
            files.read_http(server.url, deadline_s=10.0)
    assert server.accepted == 3


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf"])
def test_a_deadline_that_is_not_seconds_is_named(monkeypatch, value):
    monkeypatch.setenv(files.HTTP_DEADLINE_ENV, value)
    with pytest.raises(OSError, match=f"{files.HTTP_DEADLINE_ENV}='{value}': expected a number of seconds > 0"):
        files.read_url("http://127.0.0.1:9/never-contacted.tar")


def test_the_deadline_has_a_default_and_the_environment_sets_it(monkeypatch):
    assert files.http_deadline_s() == files.HTTP_DEADLINE_S >= 60  # a tens-of-MB shard on a slow link fits
    monkeypatch.setenv(files.HTTP_DEADLINE_ENV, "12.5")
    assert files.http_deadline_s() == 12.5
