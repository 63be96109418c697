"""A cluster process's watch on its TCP connections to the other processes (flow.addresses).

Bytewax (timely) ends the run when a connection to another process breaks only if its
receive thread reads an error or an end without timely's own closing message, or its send
thread fails to write. A peer whose run was interrupted (its stop's grace period: Bytewax
stopped as on SIGINT, then os._exit) first ends its part of the dataflow the clean way: it
sends that closing message and shuts its side. This process's receive thread then ends
without a panic, its worker waits for the peer's progress for ever, and the connection sits
in CLOSE-WAIT: nothing else ever notices (the chaos soak, seeds 21, 23, 24). The watch
notices: once the cluster has formed, a connection to another process that is no longer
ESTABLISHED (closed by the peer, reset, timed out, or closed here) is a lost peer.

It also turns TCP keepalive and TCP_USER_TIMEOUT on for those connections: a peer host that
vanishes without a FIN or RST (power loss, a partition) is otherwise noticed after the
kernel's retransmissions give up (about 15 minutes) when data is waiting, and never when
the connection is idle. With them the kernel ends the connection after about half a
minute of silence, and timely's receive thread fails on it (its own lost-peer path).

Linux only (/proc/self/fd, /proc/self/net/tcp{,6}, TCP_INFO): the processor's platform.
Timely's connections are found by their addresses, never read or written: process i
connects to every process j < i (the remote end is flow.addresses[j]) and accepts one
connection from every process j > i on its own address. They are found in the kernel's TCP
tables, which list every socket of the host's network namespace (a broker beside the
processor holds one for each node it serves); once found, each is watched on its own
descriptor (`tcp_state`: its state from TCP_INFO), and the tables are not read again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import CloudError

TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_CLOSE_WAIT = 8
TCP_STATE_NAMES = {1: "ESTABLISHED", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1",
                   5: "FIN-WAIT-2", 6: "TIME-WAIT", 7: "CLOSE", 8: "CLOSE-WAIT",
                   9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING"}
TCP_INFO_STATE = 0  # the offset of tcpi_state (numbered as above) in struct tcp_info
# Keepalive on an idle peer connection: the first probe after KEEPIDLE s of silence, then
# every KEEPINTVL s; unacknowledged data or probes for USER_TIMEOUT_S end the connection.
KEEPIDLE_S = 10
KEEPINTVL_S = 5
KEEPCNT = 4
USER_TIMEOUT_S = 30

Endpoint = tuple[str, int]


class PeerWatchError(CloudError):
    """The watch cannot do its work (no /proc, a socket option refused)."""


@dataclass(frozen=True)
class TcpSocket:
    """One of this process's TCP sockets, as /proc/self/net/tcp{,6} shows it."""
    inode: int
    local: Endpoint
    remote: Endpoint
    state: int


@dataclass(frozen=True)
class PeerConnection:
    """A connection of the cluster: `inode` its socket, `peer` who is at the other end."""
    inode: int
    peer: str
    local: Endpoint
    remote: Endpoint


@dataclass(frozen=True)
class LostPeer:
    connection: PeerConnection
    # None: none of the descriptors that held the socket when the cluster formed holds it
    state: int | None

    def describe(self) -> str:
        c = self.connection
        how = ("closed here" if self.state is None
               else "closed by the other end (CLOSE-WAIT)" if self.state == TCP_CLOSE_WAIT
               else "reset or timed out" if self.state == TCP_CLOSE
               else f"no longer established ({TCP_STATE_NAMES.get(self.state, self.state)})")
        return (f"the connection with {c.peer} ({c.local[0]}:{c.local[1]} to "
                f"{c.remote[0]}:{c.remote[1]}) {how}")


def _socket_inodes(fd_dir: Path) -> dict[int, list[int]]:
    """inode -> the file descriptors of this process holding that socket (timely holds each
    connection twice: its send and receive threads' clones)."""
    out: dict[int, list[int]] = {}
    try:
        names = os.listdir(fd_dir)
    except OSError as exc:
        raise PeerWatchError(f"cannot list {fd_dir}: {exc.strerror or exc}") from exc
    for name in names:
        try:
            link = os.readlink(fd_dir / name)
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:[") and link.endswith("]"):
            out.setdefault(int(link[8:-1]), []).append(int(name))
    return out


def _address(hex_addr: str) -> str:
    """An address of /proc/net/tcp{,6} (32-bit words in host order) as text; an IPv4-mapped
    IPv6 address as its IPv4 address."""
    packed = b"".join(struct.pack("=I", int(hex_addr[i:i + 8], 16)) for i in range(0, len(hex_addr), 8))
    ip = ipaddress.ip_address(packed)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _endpoint(text: str) -> Endpoint:
    addr, port = text.split(":")
    return _address(addr), int(port, 16)


def parse_tcp_table(text: str, inodes: Iterable[int]) -> list[TcpSocket]:
    """The rows of a /proc/net/tcp or tcp6 table whose socket inode is in `inodes`."""
    wanted = set(inodes)
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or int(f[9]) not in wanted:
            continue
        out.append(TcpSocket(int(f[9]), _endpoint(f[1]), _endpoint(f[2]), int(f[3], 16)))
    return out


def own_tcp_sockets(proc: Path = Path("/proc/self")) -> tuple[dict[int, TcpSocket], dict[int, list[int]]]:
    """This process's TCP sockets by inode, and the file descriptors of each."""
    fds = _socket_inodes(proc / "fd")
    sockets: dict[int, TcpSocket] = {}
    for table in ("tcp", "tcp6"):
        try:
            text = (proc / "net" / table).read_text()
        except FileNotFoundError:
            continue  # no IPv6
        except OSError as exc:
            raise PeerWatchError(f"cannot read {proc / 'net' / table}: {exc.strerror or exc}") from exc
        sockets.update((s.inode, s) for s in parse_tcp_table(text, fds))
    return sockets, fds


def _holds(fd: int, inode: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == f"socket:[{inode}]"
    except OSError:
        return False  # closed


def tcp_state(fd: int, inode: int) -> int | None:
    """The TCP state (as the tables number them) of socket `inode`, held at descriptor `fd`:
    None if `fd` no longer holds that socket (closed here, perhaps reused). Asked of the
    descriptor itself (getsockopt TCP_INFO, as `_setsockopt`: no Python socket object on
    timely's descriptor), so its cost does not grow with the host's sockets."""
    if not _holds(fd, inode):
        return None
    info = ctypes.create_string_buffer(8)  # the kernel copies no more than asked
    size = ctypes.c_uint32(len(info))
    if _c().getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_INFO, info, ctypes.byref(size)) != 0:
        err = ctypes.get_errno()
        if not _holds(fd, inode):
            return None  # closed, or its number taken by another socket, between the calls
        raise PeerWatchError(f"getsockopt TCP_INFO on a cluster connection: {os.strerror(err)}")
    return info.raw[TCP_INFO_STATE]


def _resolve(address: str) -> tuple[set[str], int]:
    host, port = address.rsplit(":", 1)
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError as exc:
        raise PeerWatchError(f"cannot resolve {address}: {exc}") from exc
    return {str(info[4][0]) for info in infos}, int(port)


def find_peer_connections(sockets: Iterable[TcpSocket], addresses: Sequence[str], process_id: int
                          ) -> list[PeerConnection]:
    """Of `sockets`, the established connections to the cluster's other processes."""
    resolved = [_resolve(a) for a in addresses]
    my_ips, my_port = resolved[process_id]
    out = []
    for s in sockets:
        if s.state != TCP_ESTABLISHED:
            continue
        to = [j for j in range(process_id) if s.remote[1] == resolved[j][1]
              and s.remote[0] in resolved[j][0]]
        if to:  # this process connected to a lower one
            out.append(PeerConnection(s.inode, f"process {to[0]} ({addresses[to[0]]})", s.local, s.remote))
            continue
        if s.local[1] != my_port or s.local[0] not in my_ips:
            continue
        # accepted on this process's address: one of the higher processes, by its host
        higher = [j for j in range(process_id + 1, len(addresses)) if s.remote[0] in resolved[j][0]]
        if len(higher) == 1:
            peer = f"process {higher[0]} ({addresses[higher[0]]})"
        elif higher:
            peer = "one of processes " + ", ".join(f"{j} ({addresses[j]})" for j in higher)
        else:
            continue
        out.append(PeerConnection(s.inode, peer, s.local, s.remote))
    return out


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _libc


def _setsockopt(fd: int, level: int, option: int, value: int) -> None:
    """setsockopt(2) on a file descriptor timely owns: a Python socket object made on it (or
    on a dup, which shares its flags) could make it non-blocking, and timely's blocking
    reads would then fail."""
    v = ctypes.c_int(value)
    if _c().setsockopt(fd, level, option, ctypes.byref(v), ctypes.sizeof(v)) != 0:
        err = ctypes.get_errno()
        raise PeerWatchError(f"setsockopt on a cluster connection: {os.strerror(err)}")


def keep_alive(fd: int) -> None:
    """Keepalive and TCP_USER_TIMEOUT on the socket `fd` (see the module's doc)."""
    for level, option, value in (
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
            (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPIDLE_S),
            (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPINTVL_S),
            (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPCNT),
            (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, USER_TIMEOUT_S * 1000)):
        _setsockopt(fd, level, option, value)


class PeerWatch:
    """One process's watch: `poll(now)` until the cluster's connections are all established
    (then it turns keepalive on for them), then whether one is lost; PeerWatchError when
    /proc cannot be read or a connection's state cannot be asked. A connection is reported
    once it has been lost for `grace_s`: Bytewax's own lost-peer path (a panic, its words in
    the log) comes first when it notices."""

    def __init__(self, addresses: Sequence[str], process_id: int, grace_s: float,
                 sockets: Callable[[], tuple[dict[int, TcpSocket], dict[int, list[int]]]] = own_tcp_sockets,
                 state: Callable[[int, int], int | None] = tcp_state) -> None:
        """`sockets`: this process's TCP sockets and descriptors (read until the cluster has
        formed); `state`: a watched connection's state by its descriptor and inode."""
        self.addresses = tuple(addresses)
        self.process_id = process_id
        self.grace_s = grace_s
        self._sockets = sockets
        self._state = state
        self.connections: list[PeerConnection] = []
        self._fds: dict[int, list[int]] = {}  # a watched connection's inode -> its descriptors
        self.keepalive_error: str | None = None  # why keepalive could not be turned on
        self._lost_since: dict[int, float] = {}

    @property
    def armed(self) -> bool:
        return bool(self.connections)

    def poll(self, now: float) -> LostPeer | None:
        if not self.armed:
            sockets, fds = self._sockets()
            found = find_peer_connections(sockets.values(), self.addresses, self.process_id)
            if len(found) >= len(self.addresses) - 1:
                self.connections = found
                self._fds = {c.inode: fds[c.inode] for c in found}
                try:
                    for c in found:
                        keep_alive(fds[c.inode][0])  # (an option of the socket, not the descriptor)
                except PeerWatchError as exc:  # watched all the same
                    self.keepalive_error = str(exc)
            return None
        for c in self.connections:
            state = None
            for fd in self._fds[c.inode]:  # the first that still holds it
                state = self._state(fd, c.inode)
                if state is not None:
                    break
            if state == TCP_ESTABLISHED:
                self._lost_since.pop(c.inode, None)
                continue
            since = self._lost_since.setdefault(c.inode, now)
            if now - since >= self.grace_s:
                return LostPeer(c, state)
        return None
