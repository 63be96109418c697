"""upfw: the line protocol of urbanpulse's own boards (see firmware_bridge/PROTOCOL.md)."""

from firmware_bridge.protocols.upfw.decoder import UpfwDecoder
from firmware_bridge.protocols.upfw.frames import (
    BedWeight,
    BoardMessage,
    DeviceKind,
    DoorCount,
    Hello,
    IdentityQuery,
    LoopInterval,
    LoopVehicle,
    Status,
    StatusCode,
    TicketIssued,
    TicketServed,
    UpfwFrame,
)
from firmware_bridge.protocols.upfw.wire import encode

__all__ = [
    "BedWeight",
    "BoardMessage",
    "DeviceKind",
    "DoorCount",
    "Hello",
    "IdentityQuery",
    "LoopInterval",
    "LoopVehicle",
    "Status",
    "StatusCode",
    "TicketIssued",
    "TicketServed",
    "UpfwDecoder",
    "UpfwFrame",
    "encode",
]
