"""Winsen MH-Z19B NDIR CO2 sensor."""

from firmware_bridge.protocols.mhz19b.decoder import Mhz19bDecoder
from firmware_bridge.protocols.mhz19b.frames import Mhz19bAbcStatus, Mhz19bFrame, Mhz19bReading

__all__ = ["Mhz19bAbcStatus", "Mhz19bDecoder", "Mhz19bFrame", "Mhz19bReading"]
