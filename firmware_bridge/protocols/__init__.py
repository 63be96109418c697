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


def _pms5003() -> ProtocolSpec:
    from firmware_bridge.protocols.pms5003.spec import SPEC

    return SPEC


def _pms5003t() -> ProtocolSpec:
    from firmware_bridge.protocols.pms5003.spec import SPEC_T

    return SPEC_T


def _mhz19b() -> ProtocolSpec:
    from firmware_bridge.protocols.mhz19b.spec import SPEC

    return SPEC


def _upfw() -> ProtocolSpec:
    from firmware_bridge.protocols.upfw.spec import SPEC

    return SPEC


register("sds011", _sds011)
register("pms5003", _pms5003)
register("pms5003t", _pms5003t)
register("mhz19b", _mhz19b)
register("upfw", _upfw)

__all__ = ["ProtocolSpec", "get_protocol", "protocol_names"]
