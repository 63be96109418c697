"""Mosquitto's password-file hashes, computed here instead of calling mosquitto_passwd.

Mosquitto 2.0 stores `user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

ITERATIONS = 101  # mosquitto_passwd's default in 2.0
SALT_BYTES = 12


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_mosquitto_hash(password: str, encoded: str) -> bool:
    """True if `encoded` (a `$7$` hash from a password file) matches `password`."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    iterations = int(parts[2])
    salt = base64.b64decode(parts[3])
    return secrets.compare_digest(
        mosquitto_hash(password, salt=salt, iterations=iterations), encoded
    )


def password_file_line(username: str, password: str) -> str:
    if ":" in username or "\n" in username:
        raise ValueError(f"MQTT user name {username!r} may not contain ':' or a newline")
    return f"{username}:{mosquitto_hash(password)}\n"
