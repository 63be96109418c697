"""Host to board sentences."""

from __future__ import annotations

from firmware_bridge.protocols.upfw.frames import IdentityQuery
from firmware_bridge.protocols.upfw.wire import encode


def identity_query() -> bytes:
    """`$PUPIQ,1*50`: the board answers with a HI sentence."""
    return encode(IdentityQuery())
