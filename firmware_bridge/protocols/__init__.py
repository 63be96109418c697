"""The serial protocols firmware_bridge speaks, by name."""

from __future__ import annotations

from firmware_bridge.protocols.registry import (
    ProtocolSpec,
    get_protocol,
    protocol_names,
    register,
)


def _sds011() -> ProtocolSpec:
    from firmware_bridge.protocols.sds011.spec import SPEC

    return SPEC


register("sds011", _sds011)

__all__ = ["ProtocolSpec", "get_protocol", "protocol_names"]
