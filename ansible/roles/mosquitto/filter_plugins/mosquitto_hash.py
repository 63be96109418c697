"""`{{ password | mosquitto_hash }}`: a Mosquitto 2.0 password-file hash, made on the
controller, so that the broker host never holds a password in clear (not even for the
moment `mosquitto_passwd -U` would need).

The format is Mosquitto's `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`,
as urbanpulse/stack/passwords.py writes it for the local stack (tests/ansible checks both
against each other). Salted: a new hash each time, so the role writes the file only when
the users or passwords changed.
"""

from __future__ import annotations

import base64
import hashlib
import os

ITERATIONS = 101  # mosquitto_passwd's default in 2.0
SALT_BYTES = 12


def mosquitto_hash(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise ValueError("mosquitto_hash needs a non-empty password string")
    salt = os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, ITERATIONS)
    return (f"$7${ITERATIONS}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mosquitto_hash": mosquitto_hash}
