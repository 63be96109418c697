"""A minimal MQTT 3.1.1 CONNECT over TLS, stdlib only.

The stack uses it to know that the broker is really serving (TLS handshake with our CA,
password checked) and that a reload has picked up a new user, without needing paho.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import struct
from pathlib import Path

CONNACK_ACCEPTED = 0
CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class ProbeFailed(OSError):
    """The broker could not be reached or did not speak MQTT."""


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, username: str, password: str, keepalive_s: int = 10) -> bytes:
    flags = 0x80 | 0x40 | 0x02  # user name, password, clean session
    variable = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s)
    payload = _string(client_id) + _string(username) + _string(password)
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def _read_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ProbeFailed("the broker closed the connection before CONNACK")
        data += chunk
    return data


def try_connect(
    host: str, port: int, ca_file: Path, username: str, password: str, *, timeout_s: float = 3.0,
    cert: tuple[Path, Path] | None = None,
) -> int:
    """CONNECT and return the CONNACK return code (0 = accepted); ProbeFailed if no CONNACK
    (a listener that requires a client certificate refuses one it does not trust, or none,
    in the handshake or, with TLS 1.3, when the CONNACK is read). `cert`: the client
    certificate and key files to present."""
    context = ssl.create_default_context(cafile=str(ca_file))
    client_id = f"urbanpulse-probe-{secrets.token_hex(4)}"
    try:
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host) as sock,
        ):
            sock.sendall(connect_packet(client_id, username, password))
            header = _read_exact(sock, 4)
            if header[0] != 0x20 or header[1] != 2:
                raise ProbeFailed(f"unexpected reply to CONNECT: {header.hex()}")
            if header[3] == CONNACK_ACCEPTED:
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            return header[3]
    except ProbeFailed:
        raise
    except (OSError, ssl.SSLError) as exc:
        raise ProbeFailed(f"MQTT connect to {host}:{port} failed: {exc}") from exc
