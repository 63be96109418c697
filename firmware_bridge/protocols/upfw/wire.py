"""upfw sentences to and from text (PROTOCOL.md)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import reduce
from operator import xor

from firmware_bridge.errors import CommandError
from firmware_bridge.protocols.upfw.frames import (
    BedWeight,
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

VERSION = 1
MAX_SENTENCE = 82
ADDRESS_PREFIX = "PUP"
U16 = 0xFFFF
U32 = 0xFFFF_FFFF

_TEXT = re.compile(r"[A-Za-z0-9._-]*\Z")


def checksum(body: bytes) -> int:
    """XOR of the bytes between `$` and `*`."""
    return reduce(xor, body, 0)


def sentence(type_: str, fields: Sequence[str]) -> bytes:
    body = ",".join([ADDRESS_PREFIX + type_, *fields]).encode("ascii")
    line = b"$" + body + b"*" + f"{checksum(body):02X}".encode() + b"\r\n"
    if len(line) > MAX_SENTENCE:
        raise CommandError(f"upfw sentence longer than {MAX_SENTENCE} bytes: {line!r}")
    return line


def _text(value: str, low: int, high: int, what: str) -> str:
    if not (low <= len(value) <= high and _TEXT.match(value)):
        raise CommandError(f"{what} must be {low}-{high} of [A-Za-z0-9._-], got {value!r}")
    return value


def _opt(value: float | None, scale: int) -> str:
    return "" if value is None else str(round(value * scale))


def encode(frame: UpfwFrame) -> bytes:
    """The sentence a board (or, for IdentityQuery, the host) sends for `frame`."""
    if isinstance(frame, IdentityQuery):
        return sentence("IQ", [str(VERSION)])
    head = [str(VERSION), str(frame.seq & U16), str(frame.t_ms & U32)]
    if isinstance(frame, Hello):
        fields = [
            frame.kind.value,
            _text(frame.device_id, 1, 16, "device id"),
            _text(frame.firmware, 1, 16, "firmware"),
            str(frame.channels),
        ]
        return sentence("HI", head + fields)
    if isinstance(frame, LoopVehicle):
        fields = [
            str(frame.channel), str(frame.on_ms), str(frame.count & U32),
            _opt(frame.speed_kmh, 10), _opt(frame.length_m, 10),
        ]  # fmt: skip
        return sentence("LV", head + fields)
    if isinstance(frame, LoopInterval):
        fields = [
            str(frame.channel), str(frame.interval_s), str(frame.count),
            str(round(frame.occupancy_pct * 10)), _opt(frame.mean_speed_kmh, 10),
        ]  # fmt: skip
        return sentence("LI", head + fields)
    if isinstance(frame, BedWeight):
        fields = [
            str(frame.bed), str(round(frame.weight_kg * 1000)),
            str(int(frame.stable)), str(int(frame.occupied)),
        ]  # fmt: skip
        return sentence("BW", head + fields)
    if isinstance(frame, DoorCount):
        fields = [str(frame.door), str(frame.entered & U32), str(frame.exited & U32)]
        return sentence("DC", head + fields)
    if isinstance(frame, TicketIssued):
        fields = [_text(frame.queue, 1, 8, "queue"), str(frame.ticket), str(frame.waiting)]
        return sentence("QT", head + fields)
    if isinstance(frame, TicketServed):
        fields = [
            _text(frame.queue, 1, 8, "queue"), str(frame.ticket),
            str(frame.counter), str(frame.wait_s),
        ]  # fmt: skip
        return sentence("QS", head + fields)
    fields = [
        frame.code.value,
        "" if frame.channel is None else str(frame.channel),
        _text(frame.detail, 0, 16, "detail"),
    ]
    return sentence("ST", head + fields)


# -- parsing: each parser gets the fields after `v` and raises ValueError if wrong --------

_UINT = re.compile(r"[0-9]{1,10}\Z")
_SINT = re.compile(r"-?[0-9]{1,10}\Z")


def _uint(text: str, high: int = U32) -> int:
    if not _UINT.match(text):
        raise ValueError(text)
    value = int(text)
    if value > high:
        raise ValueError(text)
    return value


def _sint(text: str) -> int:
    if not _SINT.match(text):
        raise ValueError(text)
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise ValueError(text)
    return value


def _chan(text: str) -> int:
    value = _uint(text, 255)
    if value == 0:
        raise ValueError(text)
    return value


def _opt_tenths(text: str) -> float | None:
    return None if text == "" else _uint(text) / 10


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _str(text: str, low: int, high: int) -> str:
    if not (low <= len(text) <= high and _TEXT.match(text)):
        raise ValueError(text)
    return text


def _need(fields: list[str], n: int) -> list[str]:
    if len(fields) < n:
        raise ValueError(f"{len(fields)} fields, need {n}")
    return fields


def _hello(f: list[str]) -> UpfwFrame:
    seq, t, kind, dev, fw, ch = _need(f, 6)[:6]
    return Hello(_uint(seq, U16), _uint(t), DeviceKind(kind), _str(dev, 1, 16), _str(fw, 1, 16), _chan(ch))


def _loop_vehicle(f: list[str]) -> UpfwFrame:
    seq, t, ch, on, count, speed, length = _need(f, 7)[:7]
    return LoopVehicle(
        _uint(seq, U16), _uint(t), _chan(ch), _uint(on), _uint(count),
        _opt_tenths(speed), _opt_tenths(length),
    )  # fmt: skip


def _loop_interval(f: list[str]) -> UpfwFrame:
    seq, t, ch, interval, count, occ, speed = _need(f, 7)[:7]
    return LoopInterval(
        _uint(seq, U16), _uint(t), _chan(ch), _uint(interval), _uint(count),
        _uint(occ, 1000) / 10, _opt_tenths(speed),
    )  # fmt: skip


def _bed_weight(f: list[str]) -> UpfwFrame:
    seq, t, bed, grams, stable, occupied = _need(f, 6)[:6]
    return BedWeight(
        _uint(seq, U16), _uint(t), _chan(bed), _sint(grams) / 1000, _flag(stable), _flag(occupied)
    )


def _door_count(f: list[str]) -> UpfwFrame:
    seq, t, door, entered, exited = _need(f, 5)[:5]
    return DoorCount(_uint(seq, U16), _uint(t), _chan(door), _uint(entered), _uint(exited))


def _ticket_issued(f: list[str]) -> UpfwFrame:
    seq, t, queue, ticket, waiting = _need(f, 5)[:5]
    return TicketIssued(_uint(seq, U16), _uint(t), _str(queue, 1, 8), _uint(ticket), _uint(waiting))


def _ticket_served(f: list[str]) -> UpfwFrame:
    seq, t, queue, ticket, counter, wait = _need(f, 6)[:6]
    return TicketServed(
        _uint(seq, U16), _uint(t), _str(queue, 1, 8), _uint(ticket), _uint(counter), _uint(wait)
    )


def _status(f: list[str]) -> UpfwFrame:
    seq, t, code, ch, detail = _need(f, 5)[:5]
    return Status(
        _uint(seq, U16), _uint(t), StatusCode(code), None if ch == "" else _chan(ch), _str(detail, 0, 16)
    )


def _identity_query(f: list[str]) -> UpfwFrame:
    return IdentityQuery()


PARSERS: dict[str, Callable[[list[str]], UpfwFrame]] = {
    "HI": _hello,
    "LV": _loop_vehicle,
    "LI": _loop_interval,
    "BW": _bed_weight,
    "DC": _door_count,
    "QT": _ticket_issued,
    "QS": _ticket_served,
    "ST": _status,
    "IQ": _identity_query,
}


def parse_body(body: str) -> UpfwFrame | None:
    """The message of a sentence body (between `$` and `*`) whose checksum was right;
    None if it breaks the protocol (address, version, fields)."""
    fields = body.split(",")
    address = fields[0]
    if len(address) != 5 or not address.startswith(ADDRESS_PREFIX) or len(fields) < 2:
        return None
    parser = PARSERS.get(address[3:])
    if parser is None or fields[1] != str(VERSION):
        return None
    try:
        return parser(fields[2:])
    except ValueError:
        return None
