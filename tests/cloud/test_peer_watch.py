"""cloud/peer_watch.py on real kernel sockets of this process (loopback, /proc/self): it
finds a cluster's connections by flow.addresses (accepted on this process's address from a
higher process, or made to a lower one), turns keepalive on for them, and reports one the
other end closed (CLOSE-WAIT) or reset, once it has been so for its grace period; once the
cluster has formed it asks each connection's own descriptor, never the host's TCP tables
again (they list every socket of the host: a broker beside the processor holds thousands)."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from cloud.peer_watch import (
    KEEPCNT,
    KEEPIDLE_S,
    KEEPINTVL_S,
    TCP_CLOSE,
    TCP_CLOSE_WAIT,
    TCP_ESTABLISHED,
    USER_TIMEOUT_S,
    PeerWatch,
    PeerWatchError,
    TcpSocket,
    own_tcp_sockets,
    parse_tcp_table,
    tcp_state,
)
from urbanpulse.stack.process import free_ports

GRACE_S = 10.0


@pytest.fixture
def link() -> Iterator[tuple[list[str], socket.socket, socket.socket]]:
    """addresses [process 0's, process 1's], process 0's end of their connection (accepted
    on its address), process 1's end (connected to it)."""
    a0, a1 = free_ports(2)
    addresses = [f"127.0.0.1:{a0}", f"localhost:{a1}"]
    with socket.create_server(("127.0.0.1", a0)) as listener:
        client = socket.create_connection(("127.0.0.1", a0))
        accepted, _ = listener.accept()
    try:
        yield addresses, accepted, client
    finally:
        accepted.close()
        client.close()


def _keepalive(s: socket.socket) -> tuple[int, ...]:
    return (s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))


@pytest.mark.parametrize("reset", [False, True], ids=["peer-closes", "peer-resets"])
def test_the_accepting_process_finds_its_peer_turns_keepalive_on_and_reports_it_gone(
        link: tuple[list[str], socket.socket, socket.socket], reset: bool) -> None:
    addresses, accepted, client = link
    watch = PeerWatch(addresses, 0, GRACE_S)
    assert _keepalive(accepted)[0] == 0
    assert watch.poll(0.0) is None
    assert [c.peer for c in watch.connections] == [f"process 1 ({addresses[1]})"]
    assert watch.connections[0].local == accepted.getsockname()
    assert _keepalive(accepted) == (1, KEEPIDLE_S, KEEPINTVL_S, KEEPCNT, USER_TIMEOUT_S * 1000)
    assert _keepalive(client)[0] == 0  # not a connection of process 0's: left alone
    assert not _nonblocking(accepted)  # the descriptor's flags untouched
    assert watch.poll(1.0) is None  # established: nothing to say

    if reset:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a FIN (or a RST): the peer gone, nothing read here
    assert watch.poll(2.0) is None  # lost, but not yet for its grace period
    assert watch.poll(2.0 + GRACE_S - 0.1) is None
    lost = watch.poll(2.0 + GRACE_S)
    assert lost is not None
    assert lost.state == (TCP_CLOSE if reset else TCP_CLOSE_WAIT)
    assert lost.describe().startswith(f"the connection with process 1 ({addresses[1]}) "
                                      f"(127.0.0.1:{accepted.getsockname()[1]} to 127.0.0.1:")
    assert lost.describe().endswith("reset or timed out" if reset
                                    else "closed by the other end (CLOSE-WAIT)")


def test_the_connecting_process_finds_its_peer_by_the_peer_address(
        link: tuple[list[str], socket.socket, socket.socket]) -> None:
    addresses, accepted, client = link
    watch = PeerWatch(addresses, 1, GRACE_S)
    assert watch.poll(0.0) is None
    assert [(c.peer, c.remote) for c in watch.connections] == [
        (f"process 0 ({addresses[0]})", client.getpeername())]
    assert _keepalive(client)[0] == 1
    assert _keepalive(accepted)[0] == 0
    client.close()  # closed here (its threads ended): no descriptor holds it
    assert watch.poll(1.0) is None
    lost = watch.poll(1.0 + GRACE_S)
    assert lost is not None
    assert lost.state is None
    assert lost.describe().endswith(" closed here")


def test_a_cluster_not_yet_formed_is_not_watched(
        link: tuple[list[str], socket.socket, socket.socket]) -> None:
    addresses, accepted, client = link
    third = f"127.0.0.1:{free_ports(1)[0]}"
    watch = PeerWatch([*addresses, third], 0, GRACE_S)  # process 2 not connected yet
    assert watch.poll(0.0) is None
    assert not watch.armed
    assert _keepalive(accepted)[0] == 0
    client.close()
    assert watch.poll(GRACE_S + 1) is None  # nothing armed: nothing reported


def test_the_proc_tables_read_ipv4_and_ipv4_mapped_ipv6_addresses() -> None:
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        with client, accepted:
            sockets, _ = own_tcp_sockets()
            ends = {(s.local, s.remote) for s in sockets.values()}
            assert (("127.0.0.1", port), client.getsockname()) in ends  # from the tcp6 table
            assert (client.getsockname(), ("127.0.0.1", port)) in ends  # from the tcp table
    row = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
           "timeout inode\n   0: 0100007F:1F90 0200007F:C350 08 00000000:00000000 00:00000000 "
           "00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n")
    (s,) = parse_tcp_table(row, [4242])
    assert (s.local, s.remote, s.state) == (("127.0.0.1", 8080), ("127.0.0.2", 50000), TCP_CLOSE_WAIT)
    assert parse_tcp_table(row, [1]) == []


def _inode(s: socket.socket) -> int:
    return os.stat(f"/proc/self/fd/{s.fileno()}").st_ino


def _nonblocking(s: socket.socket) -> bool:
    """The descriptor's own flag (`getblocking()` is the Python object's view of it)."""
    return bool(fcntl.fcntl(s.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)


def test_a_socket_that_is_not_tcp_cannot_be_asked_its_tcp_state() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        inode = _inode(udp)
        with pytest.raises(PeerWatchError, match="TCP_INFO"):
            tcp_state(udp.fileno(), inode)


def test_a_connection_held_on_two_descriptors_is_watched_on_either(
        link: tuple[list[str], socket.socket, socket.socket]) -> None:
    """Timely holds each connection twice (its send and receive threads' clones), and the
    receive thread closes its own when the peer ends: the other still tells CLOSE-WAIT, not
    "closed here"."""
    addresses, accepted, client = link
    clone = os.dup(accepted.fileno())
    try:
        watch = PeerWatch(addresses, 0, GRACE_S)
        assert watch.poll(0.0) is None
        assert watch.armed
        client.close()
        first = min(accepted.fileno(), clone)  # the one a single descriptor's watch held
        os.close(first)
        if first == accepted.fileno():
            accepted.detach()
        else:
            clone = accepted.detach()
        assert watch.poll(1.0) is None
        lost = watch.poll(1.0 + GRACE_S)
        assert lost is not None
        assert lost.state == TCP_CLOSE_WAIT
    finally:
        os.close(clone)


@pytest.mark.parametrize("reset", [False, True], ids=["peer-closes", "peer-resets"])
def test_a_connection_s_state_is_asked_of_its_descriptor(
        link: tuple[list[str], socket.socket, socket.socket], reset: bool) -> None:
    _, accepted, client = link
    fd, inode = accepted.fileno(), _inode(accepted)
    assert tcp_state(fd, inode) == TCP_ESTABLISHED
    assert tcp_state(fd, inode + 1) is None  # another socket's inode: not this descriptor's
    if reset:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # (on loopback the FIN or RST is in by the time close returns)
    assert tcp_state(fd, inode) == (TCP_CLOSE if reset else TCP_CLOSE_WAIT)
    assert not _nonblocking(accepted)  # the descriptor's flags untouched


def test_a_descriptor_closed_or_reused_holds_the_connection_no_more(
        link: tuple[list[str], socket.socket, socket.socket]) -> None:
    _, accepted, _ = link
    fd, inode = accepted.fileno(), _inode(accepted)
    with socket.socket() as other:
        os.dup2(other.fileno(), fd)  # the number now another socket's (the connection's closed)
        assert tcp_state(fd, inode) is None
        assert tcp_state(fd, _inode(other)) == TCP_CLOSE  # (a socket never connected)
    os.close(fd)
    accepted.detach()  # (its number closed above)
    assert tcp_state(fd, inode) is None  # closed here
    assert tcp_state(-1, inode) is None


def test_once_formed_the_cluster_is_watched_without_reading_the_tcp_tables(
        link: tuple[list[str], socket.socket, socket.socket]) -> None:
    addresses, accepted, client = link
    reads = []

    def tables() -> tuple[dict[int, TcpSocket], dict[int, list[int]]]:
        reads.append(1)
        return own_tcp_sockets()

    watch = PeerWatch(addresses, 0, GRACE_S, sockets=tables)
    assert watch.poll(0.0) is None
    assert watch.armed
    for t in range(1, 5):
        assert watch.poll(float(t)) is None
    assert len(reads) == 1  # the tables read until the cluster formed, not after
    client.close()
    assert watch.poll(5.0) is None
    lost = watch.poll(5.0 + GRACE_S)
    assert lost is not None
    assert lost.state == TCP_CLOSE_WAIT
    assert len(reads) == 1
    assert lost.connection.local == accepted.getsockname()
