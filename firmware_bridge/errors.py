"""The exception hierarchy of firmware_bridge. Decoders never raise on line noise: these
errors are for ports, links, commands that get no valid answer and wrong arguments."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error firmware_bridge raises on purpose."""


class SerialLinkError(BridgeError):
    """The serial port could not be opened, read or written."""

    def __init__(self, port: str, reason: str) -> None:
        super().__init__(f"{port}: {reason}")
        self.port = port
        self.reason = reason


class PortNotFoundError(SerialLinkError):
    """The port does not exist (adapter unplugged, wrong path)."""


class PortBusyError(SerialLinkError):
    """Another process holds the port open exclusively."""


class LinkLostError(SerialLinkError):
    """The port vanished while open (USB adapter unplugged)."""


class LinkTimeoutError(SerialLinkError):
    """Nothing arrived, or a write did not drain, within the timeout."""


class ProtocolError(BridgeError):
    """A device answered, but not as its protocol says (no valid reply after retries)."""


class CommandError(BridgeError, ValueError):
    """A command cannot be built from these arguments (out of range, bad device id)."""


class UnknownProtocolError(BridgeError, KeyError):
    """No protocol of that name is registered."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown protocol {name!r}; known: {', '.join(known)}")
        self.name = name

    def __str__(self) -> str:
        return str(self.args[0])
