"""A local certificate authority and the broker's server certificate (first `up` only)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from urbanpulse.stack.errors import StackError
from urbanpulse.stack.files import write_file
from urbanpulse.stack.layout import Layout

CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=825)
RENEW_BEFORE = timedelta(days=30)


def ensure_tls(layout: Layout, *, now: datetime | None = None) -> bool:
    """Create the CA once and a server certificate for 127.0.0.1/localhost when missing,
    unreadable or near expiry. Returns True if the server certificate was (re)issued."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC) if now is None else now
    layout.tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    if layout.ca_cert.is_file() and layout.ca_key.is_file():
        try:
            ca_cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
            loaded = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
        except ValueError as exc:
            raise StackError(
                f"the local CA in {layout.tls_dir} is unreadable ({exc}); to start over, "
                "delete that directory and give every client the new ca.pem"
            ) from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise StackError(f"{layout.ca_key} is not the EC key this stack generates")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "urbanpulse local stack"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"urbanpulse local CA {layout.home}"[:64]),
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
        write_file(layout.ca_key, pem_key(ca_key))
        write_file(layout.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        for stale in (layout.server_cert, layout.server_key):
            stale.unlink(missing_ok=True)

    if layout.server_cert.is_file() and layout.server_key.is_file():
        try:
            current: x509.Certificate | None = x509.load_pem_x509_certificate(
                layout.server_cert.read_bytes()
            )
        except ValueError:
            current = None  # unreadable: issue a new one below
        if (
            current is not None
            and current.issuer == ca_cert.subject
            and current.not_valid_after_utc - RENEW_BEFORE > now
        ):
            return False

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_file(layout.server_key, pem_key(server_key))
    write_file(layout.server_cert, server_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return True
