"""Nova Fitness SDS011 laser PM2.5/PM10 sensor."""

from firmware_bridge.protocols.sds011.decoder import Sds011Decoder
from firmware_bridge.protocols.sds011.frames import (
    ReportMode,
    Sds011DeviceIdReply,
    Sds011FirmwareReply,
    Sds011Frame,
    Sds011Measurement,
    Sds011Reply,
    Sds011ReportModeReply,
    Sds011UnknownReply,
    Sds011WorkingPeriodReply,
    Sds011WorkStateReply,
    WorkState,
)

__all__ = [
    "ReportMode",
    "Sds011Decoder",
    "Sds011DeviceIdReply",
    "Sds011FirmwareReply",
    "Sds011Frame",
    "Sds011Measurement",
    "Sds011Reply",
    "Sds011ReportModeReply",
    "Sds011UnknownReply",
    "Sds011WorkStateReply",
    "Sds011WorkingPeriodReply",
    "WorkState",
]
