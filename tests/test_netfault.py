"""The partition proxy itself, against a plain TCP listener standing for the server."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.netfault import PartitionProxy
from urbanpulse.testing import wait_for

# How long a test listens for bytes that must NOT come: the proof of silence.
SILENCE_S = 0.5


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, closed at its end however it ends."""
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


def _connect(opened: list[socket.socket], port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(sock)
    return sock


def _accept(opened: list[socket.socket], listener: socket.socket) -> socket.socket:
    sock, _ = listener.accept()
    opened.append(sock)
    return sock


def _recv_exactly(sock: socket.socket, n: int, timeout_s: float = 5.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _silent(sock: socket.socket) -> bool:
    sock.settimeout(SILENCE_S)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def test_bytes_stop_both_ways_in_a_partition_and_arrive_after_the_heal(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        client = _connect(opened, proxy.port)
        server = _accept(opened, upstream)
        client.sendall(b"hello")
        assert _recv_exactly(server, 5) == b"hello"
        server.sendall(b"world")
        assert _recv_exactly(client, 5) == b"world"

        proxy.partition()
        client.sendall(b"into the void")
        server.sendall(b"back")
        assert _silent(server)
        assert _silent(client)
        assert proxy.open_links == 1  # nobody was told
        assert proxy.stranded() == (4, 13)

        proxy.heal()
        assert _recv_exactly(server, 13) == b"into the void"
        assert _recv_exactly(client, 4) == b"back"


def test_writes_into_a_partition_fill_the_buffers_then_block(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        client = _connect(opened, proxy.port)
        server = _accept(opened, upstream)
        proxy.partition()
        client.setblocking(False)
        sent = 0
        chunk = b"x" * 65536
        blocked = False
        for _ in range(2000):  # 128 MiB at most: far beyond any socket buffer
            try:
                sent += client.send(chunk)
            except BlockingIOError:
                blocked = True
                break
        assert blocked, f"{sent} bytes went into the dead link without blocking"
        assert sent > 0
        assert _silent(server)
        proxy.heal()
        server.settimeout(5)
        received = 0
        while received < sent:
            received += len(server.recv(1 << 20))
        assert received == sent


def test_a_connection_made_in_a_partition_reaches_the_server_only_after_the_heal(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        proxy.partition()
        client = _connect(opened, proxy.port)
        client.sendall(b"CONNECT")
        wait_for(lambda: proxy.accepted == 1, 5, "the proxy to accept")
        upstream.settimeout(SILENCE_S)
        with pytest.raises(TimeoutError):
            upstream.accept()
        assert _silent(client)
        proxy.heal()
        upstream.settimeout(5)
        server = _accept(opened, upstream)
        assert _recv_exactly(server, 7) == b"CONNECT"
        server.sendall(b"CONNACK")
        assert _recv_exactly(client, 7) == b"CONNACK"


def test_a_client_that_gave_up_in_the_partition_never_reaches_the_server(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        proxy.partition()
        stale = _connect(opened, proxy.port)
        stale.sendall(b"stale")
        stale.close()
        wait_for(lambda: proxy.accepted == 1, 5, "the proxy to accept")
        proxy.heal()
        fresh = _connect(opened, proxy.port)
        fresh.sendall(b"fresh")
        server = _accept(opened, upstream)  # the first connection the server ever sees
        assert _recv_exactly(server, 5) == b"fresh"
        assert proxy.forwarded == 1


def test_a_close_in_the_partition_is_carried_through_after_the_data(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        client = _connect(opened, proxy.port)
        server = _accept(opened, upstream)
        proxy.partition()
        client.sendall(b"last words")
        client.close()
        assert _silent(server)  # neither the data nor the close
        proxy.heal()
        assert _recv_exactly(server, 10) == b"last words"
        assert server.recv(1) == b""  # then EOF
        wait_for(lambda: proxy.open_links == 0, 5, "the link to be closed")


def test_a_server_that_is_down_closes_the_client_at_once(opened: list[socket.socket]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        port = gone.getsockname()[1]
    with PartitionProxy("127.0.0.1", port) as proxy:
        client = _connect(opened, proxy.port)
        client.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # a reset is a close too
            assert client.recv(1) == b""


def test_leaving_the_block_closes_every_socket(
        upstream: socket.socket, opened: list[socket.socket]) -> None:
    with PartitionProxy(*upstream.getsockname()) as proxy:
        _connect(opened, proxy.port)
        server = _accept(opened, upstream)
        port = proxy.port
    assert proxy.error is None
    server.settimeout(5)
    assert server.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
