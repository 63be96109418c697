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
    """`setting`: the `urbanpulse stack up` option that moves the port (`--influx-port`).
    The message names its URBANPULSE_*_PORT variable too, which `urbanpulse demo` (that
    has no port options) and every later stack command read."""

    def __init__(self, service: str, bind: str, port: int, setting: str) -> None:
        variable = "URBANPULSE_" + setting.removeprefix("--").replace("-", "_").upper()
        super().__init__(
            f"port {port} on {bind} for {service} is already in use by another process; "
            f"stop it or choose another port: `urbanpulse stack up {setting} N` (kept for "
            f"later commands and `urbanpulse demo`) or {variable}=N"
        )
        self.service = service
        self.port = port


class StartFailed(StackError):
    """A server process exited or did not become ready; carries the tail of its log."""
