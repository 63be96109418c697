"""A local certificate authority and the broker's server certificate (first `up` only); in
certificate mode, a second CA and the cloud user's client certificate."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from urbanpulse.stack.errors import StackError
from urbanpulse.stack.files import write_file
from urbanpulse.stack.layout import Layout

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)
CLIENT_VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """ValueError if either file is not what this stack writes."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not the EC key this stack generates")
    return cert, key


def _new_ca(
    cert_path: Path, key_path: Path, common_name: str, now: datetime, *, cert_mode: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "urbanpulse local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_file(key_path, _pem_key(ca_key))
    write_file(cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), mode=cert_mode)
    return ca_cert, ca_key


def _still_good(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, now: datetime,
    common_name: str | None = None,
) -> bool:
    """`cert_path` and `key_path` exist, are readable and belong together (an `up` killed
    between writing the two leaves them apart), the certificate is issued by `ca_cert` (and
    named `common_name`, if given) and not within RENEW_BEFORE of its expiry."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return False  # unreadable: issue a new one
    if key.public_key() != current.public_key():
        return False
    if common_name is not None:
        names = [a.value for a in current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [common_name]:
            return False
    try:
        # signed by this CA, not only named after it (a CA made again has the same name)
        current.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return current.not_valid_after_utc - RENEW_BEFORE > now


def _issue(
    cert_path: Path, key_path: Path, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
    common_name: str, now: datetime, *, validity: timedelta, usage: Literal["server", "client"],
    alt_names: tuple[str | ipaddress.IPv4Address | ipaddress.IPv6Address, ...] = (), cert_mode: int = 0o600,
) -> None:
    """A new key and a certificate for it, named `common_name` (and `alt_names`: the
    subjectAltName, host names and IP addresses, left out when empty), signed by `ca_cert`
    for serverAuth or clientAuth (`usage`), valid from 5 minutes before `now` for
    `validity`; written to `key_path` (0600) and `cert_path` (`cert_mode`)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
    )
    if alt_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) if isinstance(name, str) else x509.IPAddress(name)
                 for name in alt_names]
            ),
            critical=False,
        )
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if usage == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        builder
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_file(key_path, _pem_key(key))
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=cert_mode)


def ensure_tls(layout: Layout, *, now: datetime | None = None) -> bool:
    """Create the CA once and a server certificate for 127.0.0.1/localhost when missing,
    unreadable or near expiry. Returns True if the server certificate was (re)issued."""
    now = datetime.now(UTC) if now is None else now
    layout.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    if layout.ca_cert.is_file() and layout.ca_key.is_file():
        try:
            ca_cert, ca_key = _load_ca(layout.ca_cert, layout.ca_key)
        except ValueError as exc:
            raise StackError(
                f"the local CA in {layout.tls_dir} is unreadable ({exc}); to start over, "
                "delete that directory and give every client the new ca.pem"
            ) from exc
    else:
        ca_cert, ca_key = _new_ca(
            layout.ca_cert, layout.ca_key, f"urbanpulse local CA {layout.home}", now,
            cert_mode=0o644,
        )
        for stale in (layout.server_cert, layout.server_key):
            stale.unlink(missing_ok=True)

    if _still_good(layout.server_cert, layout.server_key, ca_cert, now):
        return False

    _issue(
        layout.server_cert, layout.server_key, ca_cert, ca_key, "localhost", now,
        validity=SERVER_VALIDITY, usage="server",
        alt_names=("localhost", ipaddress.ip_address("127.0.0.1")), cert_mode=0o644,
    )
    return True


def ensure_client_tls(
    layout: Layout, username: str, *, may_replace_ca: bool = True, now: datetime | None = None
) -> bool:
    """Certificate mode: the cloud clients' CA (its own, not the server's CA: it signs the
    cloud user's certificate and nothing else) and `username`'s client certificate (common
    name `username`, clientAuth), issued when missing, unreadable, of another name or CA, or
    near expiry. Every file 0600. A missing or unreadable CA is made again only if
    `may_replace_ca` (no running broker holds the old one). Returns True if the client
    certificate was (re)issued."""
    now = datetime.now(UTC) if now is None else now
    layout.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        ca_cert, ca_key = _load_ca(layout.client_ca_cert, layout.client_ca_key)
    except (FileNotFoundError, ValueError) as exc:
        if not may_replace_ca:
            raise StackError(
                f"the cloud clients' CA in {layout.tls_dir} is missing or unreadable ({exc}) "
                "while mosquitto runs with it: run `urbanpulse stack down`, then `up`"
            ) from exc
        ca_cert, ca_key = _new_ca(
            layout.client_ca_cert, layout.client_ca_key,
            f"urbanpulse cloud clients CA {layout.home}", now, cert_mode=0o600,
        )
        for stale in (layout.cloud_client_cert, layout.cloud_client_key):
            stale.unlink(missing_ok=True)
    if _still_good(layout.cloud_client_cert, layout.cloud_client_key, ca_cert, now, username):
        return False

    _issue(
        layout.cloud_client_cert, layout.cloud_client_key, ca_cert, ca_key, username, now,
        validity=CLIENT_VALIDITY, usage="client",
    )
    return True
