"""The TLS context of every urbanpulse MQTT client (urbanpulse.mqtt.tls_context): a socket
whose handshake fails closes itself at once, whatever the failure (no answer, a reset,
a certificate the CA did not sign), exactly once; a handshake that succeeds leaves its
socket as it was.

Real sockets on 127.0.0.1: the session's Mosquitto (its CA and certificate), reached
directly or through a PartitionProxy so that the sockets into it can be counted by port;
a listener that resets each connection; a CA made here that signed nothing of the broker's.
The collector is off while counting, so that it cannot close what was left over.
"""

from __future__ import annotations

import dataclasses
import gc
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.netfault import PartitionProxy, sockets_connected_to
from urbanpulse.mqtt import (
    MqttConnectError,
    MqttError,
    SocketClosedOnFailedHandshake,
    close_client,
    connect_and_wait,
    make_client,
    tls_context,
)
from urbanpulse.stack import StackInfo

HANDSHAKE_TIMEOUT_S = 0.3


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    """A self-signed CA that signed nothing the broker has."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the stack's CA")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp_path / "other-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


class ResettingListener:
    """Accepts each connection on a free loopback port and resets it (RST, no TLS answer)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.recv(4096)  # the ClientHello: the reset comes in the middle of the handshake
            conn.close()

    def __enter__(self) -> ResettingListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def _handshake(context: ssl.SSLContext, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=HANDSHAKE_TIMEOUT_S)
    sock = context.wrap_socket(raw, server_hostname="127.0.0.1", do_handshake_on_connect=False)
    assert raw.fileno() == -1  # the TLS socket took the descriptor over
    return sock


def test_a_reset_handshake_closes_its_socket_once(stack: StackInfo) -> None:
    with ResettingListener() as listener:
        sock = _handshake(tls_context(stack.ca_file), listener.port)
        assert isinstance(sock, SocketClosedOnFailedHandshake)
        with pytest.raises((ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            sock.do_handshake()
        assert sock.fileno() == -1
        sock.close()  # closing again, as a caller's own cleanup would, is harmless
        assert sock.fileno() == -1


def test_a_handshake_that_gets_no_answer_closes_its_socket(stack: StackInfo) -> None:
    with PartitionProxy(stack.mqtt_host, stack.mqtt_port) as proxy:
        proxy.partition()
        sock = _handshake(tls_context(stack.ca_file), proxy.port)
        with pytest.raises(TimeoutError):
            sock.do_handshake()
        assert sock.fileno() == -1
        assert sockets_connected_to(proxy.port) == 0


def test_a_certificate_the_ca_did_not_sign_closes_the_socket(
        stack: StackInfo, other_ca: Path) -> None:
    sock = _handshake(tls_context(other_ca), stack.mqtt_port)
    with pytest.raises(ssl.SSLCertVerificationError):
        sock.do_handshake()
    assert sock.fileno() == -1


def test_the_stack_client_leaves_no_socket_after_failed_handshakes(
        stack: StackInfo, other_ca: Path, no_collector: None) -> None:
    """Through paho (make_client, connect_and_wait), with each error kept, as a caller that
    stores or logs it keeps its traceback and with it paho's frames. (A handshake with no
    answer through paho: tests/cloud/test_ingest_tls_dead_link.py.)"""
    creds = stack.mqtt("cloud")
    errors = []
    with PartitionProxy(stack.mqtt_host, creds.port) as proxy:
        wrong_ca = make_client("tls-wrong-ca", dataclasses.replace(creds, port=proxy.port,
                                                                   ca_file=other_ca))
        for _ in range(2):
            with pytest.raises(MqttConnectError, match="CERTIFICATE_VERIFY_FAILED") as error:
                connect_and_wait(wrong_ca)
            errors.append(error)
        assert proxy.accepted == 2
        assert sockets_connected_to(proxy.port) == 0
    with ResettingListener() as listener:
        reset = make_client("tls-reset", dataclasses.replace(creds, port=listener.port))
        with pytest.raises(MqttConnectError, match="cannot connect") as error:
            connect_and_wait(reset)
        errors.append(error)
        assert sockets_connected_to(listener.port) == 0


def test_a_successful_handshake_keeps_its_socket(stack: StackInfo) -> None:
    with PartitionProxy(stack.mqtt_host, stack.mqtt("cloud").port) as proxy:
        client = make_client("tls-fine", dataclasses.replace(stack.mqtt("cloud"), port=proxy.port),
                             clean_start=True)
        connect_and_wait(client)
        try:
            sock = client.socket()
            assert isinstance(sock, SocketClosedOnFailedHandshake)
            assert sock.fileno() >= 0
            assert sock.version() is not None
            assert sockets_connected_to(proxy.port) == 1
            info = client.publish("urbanpulse/v1/tls-check", b"x", qos=1)
            info.wait_for_publish(10)
            assert info.is_published()
        finally:
            close_client(client)
        assert sockets_connected_to(proxy.port) == 0


def test_files_that_cannot_be_used_are_named(tmp_path: Path, other_ca: Path) -> None:
    with pytest.raises(MqttError, match=r"CA file .*missing\.crt"):
        tls_context(tmp_path / "missing.crt")
    with pytest.raises(MqttError, match=r"client certificate .*other-ca\.crt / key .*nokey"):
        tls_context(other_ca, other_ca, tmp_path / "nokey")
