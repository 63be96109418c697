"""A network partition for tests: a TCP forwarder on 127.0.0.1 that can stop moving bytes.

`PartitionProxy(host, port)` listens on a free loopback port and forwards every connection
to `host:port` (a Mosquitto, an InfluxDB). `partition()` makes the link silent: from its
return on, no byte moves in either direction, yet every socket stays open. `heal()` lets
the bytes move again. One selector thread does the work; leaving the `with` block stops it
and closes every socket, so nothing outlives the test.

Why it is faithful to a dead link (a cable cut, a router gone, a NAT entry dropped):
- Neither end gets a FIN or RST. Its writes succeed until the kernel's buffers (its own
  send buffer and the proxy's unread receive buffer) are full, then block or return EAGAIN;
  its reads wait. Only a keepalive, a request timeout or the application notices.
- A new connection during the partition completes its TCP handshake with the proxy but
  goes nowhere: the client's CONNECT or HTTP request gets no answer, as after a SYN into
  the void (see "what it is not").
- At `heal()` what an end wrote into the dead link arrives late, in order, as TCP
  retransmissions would deliver it; an end that closed its socket meanwhile has its close
  carried through once its data is delivered (its peer sees EOF, or the peer's own kernel
  answers with RST if the peer had closed too). A connection made during the partition
  whose client already gave up is dropped at the heal without reaching the server: its
  handshake would never have completed.

What it is not: no packet loss, reordering or delay inside a flowing link; no TCP
retransmission timeout (a real kernel gives up on a silent peer after about 15 minutes
of retransmissions, far beyond any test here); a connect during the partition succeeds at
once instead of timing out in `connect()` (the client then waits for its first answer,
which it does not get either way).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import selectors
import socket
import struct
import termios
import threading
from dataclasses import dataclass, field
from types import TracebackType

# How much one direction of a link holds in the proxy's own memory before it stops reading
# that side (the kernel buffers then take the rest, as on a real path).
_BUFFER_BYTES = 256 * 1024
_CHUNK = 65536
_UPSTREAM_CONNECT_S = 2.0
_SELECT_S = 0.2


def _unread(sock: socket.socket) -> int:
    """Bytes in the socket's kernel receive queue."""
    if sock.fileno() < 0:
        return 0
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket | None = None  # None until connected onward
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)
    client_eof: bool = False
    server_eof: bool = False


class PartitionProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0  # client connections accepted, partitioned or not
        self.forwarded = 0  # connections connected onward to the upstream
        self._partitioned = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._links: list[_Link] = []
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the thread, if anything did

    # -- control, from the test's thread ----------------------------------------------

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    @property
    def open_links(self) -> int:
        with self._lock:
            return len(self._links)

    def stranded(self) -> tuple[int, int]:
        """Bytes sent into the proxy and not yet passed on: (toward the clients, toward the
        server). During a partition: what each side wrote into the dead link."""
        to_clients = to_server = 0
        with self._lock:
            for link in self._links:
                to_clients += len(link.to_client) + (_unread(link.server) if link.server else 0)
                to_server += len(link.to_server) + _unread(link.client)
        return to_clients, to_server

    def partition(self) -> None:
        """From the return on, no byte moves through the proxy in either direction."""
        with self._lock:
            self._partitioned = True
        self._wake()

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False
        self._wake()

    def __enter__(self) -> PartitionProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"partition-proxy-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            for link in self._links:
                self._close(link)
            self._links.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    # -- the forwarding thread --------------------------------------------------------

    def _run(self) -> None:
        try:
            with selectors.DefaultSelector() as sel:
                while not self._stop.is_set():
                    self._register(sel)
                    events = sel.select(_SELECT_S)
                    with self._lock:
                        if self._stop.is_set():
                            return
                        self._handle(events)
        except BaseException as exc:  # kept for the test to see, and raised again
            self.error = exc
            raise

    def _register(self, sel: selectors.BaseSelector) -> None:
        """Sets each socket's interest from the state: nothing but accepts while partitioned."""
        wanted: dict[socket.socket, tuple[int, object]] = {}
        assert self._listener is not None
        assert self._wake_r is not None
        wanted[self._listener] = (selectors.EVENT_READ, None)
        wanted[self._wake_r] = (selectors.EVENT_READ, None)
        with self._lock:
            if not self._partitioned:
                for link in self._links:
                    if link.server is None:
                        continue
                    c = s = 0
                    if not link.client_eof and len(link.to_server) < _BUFFER_BYTES:
                        c |= selectors.EVENT_READ
                    if link.to_client:
                        c |= selectors.EVENT_WRITE
                    if not link.server_eof and len(link.to_client) < _BUFFER_BYTES:
                        s |= selectors.EVENT_READ
                    if link.to_server:
                        s |= selectors.EVENT_WRITE
                    if c:
                        wanted[link.client] = (c, link)
                    if s:
                        wanted[link.server] = (s, link)
        for key in list(sel.get_map().values()):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock not in wanted or sock.fileno() < 0:
                sel.unregister(sock)
        for sock, (events, data) in wanted.items():
            try:
                key = sel.get_key(sock)
            except KeyError:
                sel.register(sock, events, data)
                continue
            if key.events != events or key.data is not data:
                sel.modify(sock, events, data)

    def _handle(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        """Called with the lock held."""
        if not self._partitioned:
            for link in [lk for lk in self._links if lk.server is None]:
                self._connect_pending(link)
        for key, mask in events:
            sock = key.fileobj
            if sock is self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            elif sock is self._listener:
                self._accept()
            elif not self._partitioned and isinstance(key.data, _Link) and key.data in self._links:
                self._move(key.data, sock is key.data.client, mask)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            self.accepted += 1
            client.setblocking(False)
            link = _Link(client)
            self._links.append(link)
            if not self._partitioned:
                self._connect_pending(link)

    def _connect_pending(self, link: _Link) -> None:
        """Connects a client onward, unless it already gave up (then it never reaches the server)."""
        while True:
            try:
                data = link.client.recv(_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._drop(link)
                return
            link.to_server += data
        try:
            server = socket.create_connection(self.upstream, timeout=_UPSTREAM_CONNECT_S)
        except OSError:
            self._drop(link)  # the server is down: the client sees its connection closed
            return
        server.setblocking(False)
        link.server = server
        self.forwarded += 1

    def _move(self, link: _Link, from_client: bool, mask: int) -> None:
        assert link.server is not None
        here = link.client if from_client else link.server
        inbox = link.to_server if from_client else link.to_client
        outbox = link.to_client if from_client else link.to_server
        try:
            if mask & selectors.EVENT_WRITE and outbox:
                sent = here.send(outbox)
                del outbox[:sent]
            if mask & selectors.EVENT_READ:
                data = here.recv(_CHUNK)
                if data:
                    inbox += data
                elif from_client:
                    link.client_eof = True
                else:
                    link.server_eof = True
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ETIMEDOUT):
                raise
            self._drop(link)
            return
        # A side that closed has its close carried through once its data is delivered.
        if (link.client_eof and not link.to_server) or (link.server_eof and not link.to_client):
            self._drop(link)

    def _drop(self, link: _Link) -> None:
        self._close(link)
        if link in self._links:
            self._links.remove(link)

    @staticmethod
    def _close(link: _Link) -> None:
        for sock in (link.client, link.server):
            if sock is not None:
                sock.close()


def proxy_for_url(url: str) -> PartitionProxy:
    """A proxy in front of the HTTP server at `url` (http://host:port, as InfluxDB's)."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return PartitionProxy(host, int(port))


def sockets_connected_to(port: int) -> int:
    """This process's TCP sockets whose remote end is 127.0.0.1:`port` (the clients' ends of
    links into the proxy; the proxy's own ends have it as their local port)."""
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed while listing
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    with open("/proc/self/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[9] in inodes:
                count += 1
    return count
