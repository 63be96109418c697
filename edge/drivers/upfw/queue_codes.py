"""The kiosk queue codes the boards on a port sent, as text kept by the agent
(`DriverContext.state`) and committed with the readings, so that a restarted driver refuses
two codes that would publish as one sensor id ("A" and "a") at the first ticket of either,
instead of publishing whichever it hears first (README.md, "Sensor ids")."""

from __future__ import annotations

import json
import re

from edge.driver_state import damaged
from edge.drivers.upfw.mapping import MAX_BOARDS, MAX_CODES, QueueCodes

_CODE = re.compile(r"[A-Za-z0-9._-]{1,8}")  # firmware_bridge/PROTOCOL.md, QT


def state_key(sensor_id: str) -> str:
    return f"upfw/{sensor_id}/queues"


def encode(codes: QueueCodes) -> str:
    return json.dumps({"boards": [[device, firmware, list(queues)]
                                  for device, firmware, queues in codes.boards],
                       "heard": [list(h) for h in codes.heard]})


def decode(text: str, key: str) -> QueueCodes:
    """DriverError naming the key if the text is damaged: codes taken wrongly would publish
    two queues' tickets under one sensor id, or refuse a queue that clashes with none."""
    try:
        body = json.loads(text)["boards"]
        boards = tuple((device, firmware, queues) for device, firmware, queues in body)
        heard = tuple((device, code, float(t)) for device, code, t in json.loads(text).get("heard", []))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # TypeError: no table, or no lists
        raise damaged("kiosk queue codes", key, f" ({exc})") from exc
    if len(boards) > MAX_BOARDS or not all(
            all(t is None or isinstance(t, str) for t in (device, firmware))
            and isinstance(queues, list) and len(queues) <= MAX_CODES
            and all(isinstance(q, str) and _CODE.fullmatch(q) for q in queues)
            for device, firmware, queues in boards):
        raise damaged("kiosk queue codes", key, f": {text!r}")
    if not all((d is None or isinstance(d, str)) and isinstance(q, str) for d, q, _ in heard):
        raise damaged("kiosk queue codes", key, f": {text!r}")
    return QueueCodes(tuple((device, firmware, tuple(queues)) for device, firmware, queues in boards),
                      heard)
