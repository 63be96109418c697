"""Typed upfw messages (PROTOCOL.md, version 1). Board messages carry `seq` (0..65535,
wrapping) and `t_ms` (board uptime in ms)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class DeviceKind(Enum):
    LOOP = "LOOP"
    BED = "BED"
    DOOR = "DOOR"
    KIOSK = "KIOSK"


class StatusCode(Enum):
    OK = "OK"
    LOOP_OPEN = "LOOP_OPEN"
    LOOP_SHORT = "LOOP_SHORT"
    LOOP_DRIFT = "LOOP_DRIFT"
    LOAD_CELL = "LOAD_CELL"
    TAMPER = "TAMPER"
    PAPER_LOW = "PAPER_LOW"
    REBOOT = "REBOOT"


@dataclass(frozen=True, slots=True)
class Hello:
    seq: int
    t_ms: int
    kind: DeviceKind
    device_id: str
    firmware: str
    channels: int

    def as_record(self) -> dict[str, object]:
        return {
            "type": "hello", "seq": self.seq, "t_ms": self.t_ms, "kind": self.kind.value.lower(),
            "device_id": self.device_id, "firmware": self.firmware, "channels": self.channels,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class LoopVehicle:
    seq: int
    t_ms: int
    channel: int
    on_ms: int
    count: int
    speed_kmh: float | None = None
    length_m: float | None = None

    def as_record(self) -> dict[str, object]:
        return {
            "type": "loop_vehicle", "seq": self.seq, "t_ms": self.t_ms, "channel": self.channel,
            "on_ms": self.on_ms, "count": self.count, "speed_kmh": self.speed_kmh,
            "length_m": self.length_m,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class LoopInterval:
    seq: int
    t_ms: int
    channel: int
    interval_s: int
    count: int
    occupancy_pct: float
    mean_speed_kmh: float | None = None

    def as_record(self) -> dict[str, object]:
        return {
            "type": "loop_interval", "seq": self.seq, "t_ms": self.t_ms, "channel": self.channel,
            "interval_s": self.interval_s, "count": self.count,
            "occupancy_pct": self.occupancy_pct, "mean_speed_kmh": self.mean_speed_kmh,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class BedWeight:
    seq: int
    t_ms: int
    bed: int
    weight_kg: float
    stable: bool
    occupied: bool

    def as_record(self) -> dict[str, object]:
        return {
            "type": "bed_weight", "seq": self.seq, "t_ms": self.t_ms, "bed": self.bed,
            "weight_kg": self.weight_kg, "stable": self.stable, "occupied": self.occupied,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class DoorCount:
    seq: int
    t_ms: int
    door: int
    entered: int
    exited: int

    def as_record(self) -> dict[str, object]:
        return {
            "type": "door_count", "seq": self.seq, "t_ms": self.t_ms, "door": self.door,
            "entered": self.entered, "exited": self.exited,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class TicketIssued:
    seq: int
    t_ms: int
    queue: str
    ticket: int
    waiting: int

    def as_record(self) -> dict[str, object]:
        return {
            "type": "ticket_issued", "seq": self.seq, "t_ms": self.t_ms, "queue": self.queue,
            "ticket": self.ticket, "waiting": self.waiting,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class TicketServed:
    seq: int
    t_ms: int
    queue: str
    ticket: int
    counter: int
    wait_s: int

    def as_record(self) -> dict[str, object]:
        return {
            "type": "ticket_served", "seq": self.seq, "t_ms": self.t_ms, "queue": self.queue,
            "ticket": self.ticket, "counter": self.counter, "wait_s": self.wait_s,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Status:
    seq: int
    t_ms: int
    code: StatusCode
    channel: int | None = None
    detail: str = ""

    def as_record(self) -> dict[str, object]:
        return {
            "type": "status", "seq": self.seq, "t_ms": self.t_ms, "code": self.code.value,
            "channel": self.channel, "detail": self.detail,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class IdentityQuery:
    """Host to board: 'say HI'."""

    def as_record(self) -> dict[str, object]:
        return {"type": "identity_query"}


BoardMessage = (
    Hello | LoopVehicle | LoopInterval | BedWeight | DoorCount | TicketIssued | TicketServed | Status
)
UpfwFrame = BoardMessage | IdentityQuery
