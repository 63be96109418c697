"""Plantower PMS5003 and PMS5003T particle sensors."""

from firmware_bridge.protocols.pms5003.decoder import Pms5003Decoder, Pms5003tDecoder
from firmware_bridge.protocols.pms5003.frames import (
    Mode,
    Pms5003Ack,
    Pms5003Frame,
    Pms5003Measurement,
    Pms5003tFrame,
    Pms5003tMeasurement,
)

__all__ = [
    "Mode",
    "Pms5003Ack",
    "Pms5003Decoder",
    "Pms5003Frame",
    "Pms5003Measurement",
    "Pms5003tDecoder",
    "Pms5003tFrame",
    "Pms5003tMeasurement",
]
