"""Errors of the local stack."""

from __future__ import annotations

from urbanpulse.errors import UrbanpulseError


class StackError(UrbanpulseError):
    """The local stack could not be started, stopped or inspected; the message says why."""


class BinaryMissing(StackError):
    def __init__(self, name: str, path: str, package: str) -> None:
        super().__init__(
            f"{name} not found at {path}: install the Debian package {package!r} "
            f"(e.g. `sudo apt-get install {package}`)"
        )
        self.name = name


class PortInUse(StackError):
    def __init__(self, service: str, bind: str, port: int, setting: str) -> None:
        super().__init__(
            f"port {port} on {bind} for {service} is already in use by another process; "
            f"stop it or choose another port with {setting}"
        )
        self.service = service
        self.port = port


class StartFailed(StackError):
    """A server process exited or did not become ready; carries the tail of its log."""
