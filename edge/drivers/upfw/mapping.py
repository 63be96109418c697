"""From upfw board messages to contract readings: which kind, which sensor id, which values.

Pure: no I/O, no clock of its own (callers pass monotonic `now`). One mapper per driver
run; door totals carry over a restart through `door_totals()` and `resume()`, and the kiosk
queue codes each board sent through `queue_codes()` and `resume_codes()` (the driver keeps
both on disk), everything else starts afresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from edge.errors import DriverError
from firmware_bridge.protocols.upfw import (
    BedWeight,
    BoardMessage,
    DoorCount,
    Hello,
    LoopInterval,
    LoopVehicle,
    Status,
    StatusCode,
    TicketIssued,
    TicketServed,
)
from urbanpulse.hour_intervals import divides_hour
from urbanpulse.wire.payload import SENSOR_ID, SENSOR_ID_MAX

U16 = 0xFFFF
U32 = 0xFFFF_FFFF
# `t_ms` stepping back counts as a wrap (49.7 days of uptime) only near the top of the range.
WRAP_MARGIN_MS = 3_600_000
MAX_INTERVAL_S = 3600.0  # the contract's bound on interval_s
BOOT = (0, 0)  # a door's (total, t_ms) at the board's boot: counts since the boot follow
# seq also wraps to 0 every 65,536 sentences. A board cannot send them faster than its line
# (115200 baud at most, 10 bits a byte, 17 bytes for a sentence without fields): a first
# sentence with seq 0 is the boot only if its uptime is below that, 96.7 s.
BOOT_WINDOW_MS = 65_536 * 17 * 10 * 1000 // 115_200

# Kiosk queue codes kept across restarts (QueueCodes): the boards last heard on the port, and
# the codes of each. A board sending more codes keeps its clashing ones and its newest.
MAX_BOARDS = 4
MAX_CODES = 64
# A code kept from before the restart counts in a clash while its last ticket is at most so
# old (by the node's clock): the board's codes changed to differ, the code no longer sent is
# let go after that; a code silent longer may leak one ticket under the shared id, once.
KEPT_CODE_MEMORY_S = 3600.0
HEARD_STEP_S = 60.0  # a code's last ticket is kept to this (the state is staged no more often)
_RESTARTED = (" (codes heard before the driver restarted: a code the board no longer sends "
              "is let go an hour after its last ticket, or at once when the board says HI "
              "with another firmware version)")

LoopReadings = Literal["intervals", "vehicles"]
Values = dict[str, float]


def name_key(channel: str) -> str:
    """The key `names` holds a channel or queue code under: lower case, and a number
    without leading zeros (`01` names channel 1, and a kiosk's queue code `01`)."""
    key = channel.lower()
    return str(int(key)) if key.isascii() and key.isdigit() else key


@dataclass(frozen=True, slots=True)
class Out:
    sensor: str
    kind: str
    values: Values


@dataclass(frozen=True, slots=True)
class DoorTotals:
    """What counting every person across a driver restart needs: the board last heard (its
    device id, when it said), its last sentence (seq, t_ms) and each door's (total, t_ms)."""

    device_id: str | None
    last: tuple[int, int]
    doors: Mapping[int, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class QueueCodes:
    """The kiosk queue codes the boards on a port sent, kept across a driver restart so that
    two codes publishing as one sensor id are refused at the first ticket of either: per
    board (device id, firmware, codes in the order first heard), the board heard last
    last. A device id of None: codes heard before any HI."""

    boards: tuple[tuple[str | None, str | None, tuple[str, ...]], ...]
    # (device id, code) -> the node's clock (epoch s) at its last ticket, to HEARD_STEP_S;
    # a code without one (kept before the times were) never ages
    heard: tuple[tuple[str | None, str, float], ...] = ()


@dataclass(slots=True)
class _Codes:
    firmware: str | None
    codes: list[str]
    heard: dict[str, float] = field(default_factory=dict)  # code -> QueueCodes.heard's time
    resumed: set[str] = field(default_factory=set)  # kept from before the restart, not heard since


@dataclass(slots=True)
class _LoopAcc:
    count: int = 0
    on_ms: int = 0
    speed_sum: float = 0.0
    speeds: int = 0
    length_sum: float = 0.0
    lengths: int = 0


@dataclass(slots=True)
class _Bed:
    occupied: bool = False
    fault: bool = False
    weight_kg: float | None = None
    sent: tuple[bool, bool] | None = None
    sent_at: float = 0.0


@dataclass
class UpfwMapper:
    sensor_id: str
    names: Mapping[str, str] = field(default_factory=dict)
    loop_readings: LoopReadings = "intervals"
    bed_heartbeat_s: float = 60.0
    # Sensor ids other sensors publish under -> the config key holding each (UpfwParams.taken)
    taken: Mapping[str, str] = field(default_factory=dict)
    key: str = ""  # the board's config key, for errors

    hello: Hello | None = None
    reboots: int = 0
    lost_sentences: int = 0
    door_gaps: int = 0
    ignored: int = 0  # messages the chosen mapping leaves out (LV or LI, see loop_readings)
    # LIs not sent: their interval does not divide an hour (or is over it); the first one
    # (the driver fails on it once the sentences read with it are sent)
    uneven_intervals: int = 0
    uneven: LoopInterval | None = None
    faults: dict[str, str] = field(default_factory=dict)
    messages: dict[str, int] = field(default_factory=dict)
    doors: dict[int, tuple[int, int]] = field(default_factory=dict)  # door -> (entered, t_ms)
    beds: dict[int, _Bed] = field(default_factory=dict)
    loops: dict[int, _LoopAcc] = field(default_factory=dict)
    # Loop channels that gave a speed (loop pairs: a single loop never does) since the
    # driver started, or since the HI of another board or firmware: each of their readings
    # says how many vehicles its speed is the mean of (`speed_count`, 0 included).
    paired: set[int] = field(default_factory=set)
    # The kiosk queue codes (as sent) each board sent, by device id (QueueCodes): a code
    # publishing as another's sensor id ("a" beside "A", "007" beside a named "7") is refused.
    # `codes_changed` moves when they change (the driver keeps them); `_board` is the
    # device id whose codes apply: the HI's, or before it the board last heard (resumed).
    codes: dict[str | None, _Codes] = field(default_factory=dict)
    codes_changed: int = 0
    _board: str | None = None
    _last: tuple[int, int] | None = None  # (seq, t_ms) of the previous message
    _since_boot = False  # door totals count from 0 at a boot we saw
    _resumed_from: str | None = None  # the device id the resumed totals belong to

    @property
    def last(self) -> tuple[int, int] | None:
        """(seq, t_ms) of the last sentence heard (or resumed from)."""
        return self._last

    def door_totals(self) -> DoorTotals | None:
        """The state `resume` takes; None before any door count."""
        if not self.doors or self._last is None:
            return None
        device = self.hello.device_id if self.hello is not None else self._resumed_from
        return DoorTotals(device, self._last, dict(self.doors))

    def resume(self, saved: DoorTotals) -> None:
        """Continue counting from totals a previous run saved. The board's next sentence
        decides: uptime stepping back means it rebooted meanwhile (counts restart from 0,
        as within a run); a hello from another device drops the totals (new baselines)."""
        self._last = saved.last
        self.doors = dict(saved.doors)
        self._resumed_from = saved.device_id

    def queue_codes(self) -> QueueCodes:
        """The state `resume_codes` takes."""
        boards = self.codes.items()
        return QueueCodes(tuple((device, c.firmware, tuple(c.codes)) for device, c in boards),
                          tuple((device, q, t) for device, c in boards for q, t in c.heard.items()))

    def resume_codes(self, saved: QueueCodes) -> None:
        """Continue with the codes a previous run kept: until a HI says which board this is,
        the board heard last's apply."""
        heard: dict[str | None, dict[str, float]] = {}
        for device, code, t in saved.heard:
            heard.setdefault(device, {})[code] = t
        self.codes = {device: _Codes(firmware, list(codes), {q: t for q, t in heard.get(device, {}).items()
                                                             if q in codes}, set(codes))
                      for device, firmware, codes in saved.boards}
        self._board = saved.boards[-1][0] if saved.boards else None

    def _on_hello_codes(self, device: str, firmware: str) -> None:
        """The board's codes are its firmware's: those it sent are kept per device id and
        firmware version (another version, codes changed perhaps, starts afresh). Codes
        heard before any HI are the HI's board's; the boards heard longest ago go first."""
        before = self.queue_codes()
        pre = self.codes.pop(None, None) if self._board is None else None
        entry = self.codes.pop(device, None)
        if entry is None or entry.firmware != firmware:
            entry = _Codes(firmware, [])
        if pre is not None:
            for code in pre.codes:
                if code not in entry.codes:  # (with its last ticket's time, and whether resumed)
                    entry.codes.append(code)
                    if code in pre.heard:
                        entry.heard[code] = pre.heard[code]
                    if code in pre.resumed:
                        entry.resumed.add(code)
        self.codes[device] = entry
        self._board = device
        self._trim()
        if self.queue_codes() != before:
            self.codes_changed += 1

    def _trim(self) -> None:
        """At most MAX_BOARDS boards' codes: those heard longest ago go (never the current)."""
        while len(self.codes) > MAX_BOARDS:
            del self.codes[next(d for d in self.codes if d != self._board)]

    @staticmethod
    def _forgotten(board: _Codes, code: str, wall: float | None) -> bool:
        """A code kept from before the restart whose last ticket is older than
        KEPT_CODE_MEMORY_S (the board's codes were changed, most likely): no clash."""
        at = board.heard.get(code)
        return (wall is not None and at is not None and code in board.resumed
                and wall - at > KEPT_CODE_MEMORY_S)

    def _hear(self, board: _Codes, queue: str, wall: float | None) -> None:
        board.resumed.discard(queue)
        if wall is not None:
            at = board.heard.get(queue)
            if at is None or wall - at >= HEARD_STEP_S:
                board.heard[queue] = wall - wall % HEARD_STEP_S
                self.codes_changed += 1
        if queue in board.codes:
            return
        board.codes.append(queue)
        if len(board.codes) > MAX_CODES:  # the oldest code publishing as no other's goes
            ids = [self.sensor(c) for c in board.codes]
            gone = board.codes.pop(next((i for i, s in enumerate(ids) if ids.count(s) == 1), 0))
            board.heard.pop(gone, None)
            board.resumed.discard(gone)
        self.codes_changed += 1

    def sensor(self, channel: int | str) -> str:
        key = str(channel).lower()
        return self.names.get(name_key(key)) or f"{self.sensor_id}-{key}"

    def queue_sensor(self, queue: str, wall: float | None = None) -> str:
        """A kiosk queue's sensor id: its `names` entry, or `<id>-<code>`. The config check
        cannot see queue codes before the board sends them: a derived id that another
        sensor publishes under, or that is too long for a sensor id, is refused here
        (DriverError naming both keys): its readings would be mixed with that sensor's
        (one series, one sequence counter), or rejected by the cloud. So is a second code
        of the board publishing as a queue's id ("a" after "A", "007" after "7" named):
        another queue, whose tickets would be mixed with the first's. `wall`: the node's
        clock (epoch s), which ages the codes kept from before a restart."""
        sensor = self.sensor(queue)
        board = self.codes.get(self._board)
        if board is None:
            board = self.codes[self._board] = _Codes(
                None if self.hello is None else self.hello.firmware, [])
            self._trim()
        where = f"{self.key}.id" if self.key else f"upfw sensor {self.sensor_id!r}"
        named = name_key(queue.lower())
        if any(c != queue and self.sensor(c) == sensor and not self._forgotten(board, c, wall)
               for c in board.codes):
            # Two codes are two queues (PROTOCOL.md, QT: "A" is not "a", "007" not "7"),
            # which sensor ids (lower case) and names keys (case and leading zeros
            # ignored) cannot tell apart: one series would hold both queues' tickets. Kept
            # (a restarted driver refuses the first ticket of either), and refused.
            self._hear(board, queue, wall)
            raise self._clash(board, queue, sensor, named, where, wall)
        if named in self.names:
            self._hear(board, queue, wall)
            return sensor  # named: the config check saw it
        holder = self.taken.get(sensor)
        if holder is not None:
            raise DriverError(
                f"{where}: kiosk queue {queue!r} publishes as {sensor!r} (<id>-<queue code>), "
                f"which is already used by {holder}: two devices' readings would be mixed under "
                f"one sensor id; rename one, or name the queue in {self.key or 'the board'}.names "
                f"({queue} = \"...\")")
        if not SENSOR_ID.fullmatch(sensor):
            raise DriverError(
                f"{where}: kiosk queue {queue!r} would publish as {sensor!r}, "
                f"{len(sensor)} characters: the wire contract's sensor ids have at most "
                f"{SENSOR_ID_MAX} (the cloud would reject every reading of the queue); give the "
                f"board a shorter id, or name the queue in {self.key or 'the board'}.names")
        self._hear(board, queue, wall)
        return sensor

    def _clash(self, board: _Codes, queue: str, sensor: str, named: str, where: str,
               wall: float | None) -> DriverError:
        codes = [c for c in board.codes  # in the order heard
                 if self.sensor(c) == sensor and (c == queue or not self._forgotten(board, c, wall))]
        listed = ", ".join(repr(c) for c in codes[:-1]) + f" and {codes[-1]!r}"
        if self.hello is not None:
            who = f"board {self.hello.device_id!r}"
        elif self._board is not None:
            who = f"board {self._board!r} (last heard; no HI yet)"
        else:
            who = "the board (no HI heard yet)"
        how = (f"{self.key or 'the board'}.names.{named}" if named in self.names
               else "<id>-<queue code>")
        kept = any(c in board.resumed for c in codes if c != queue)
        return DriverError(
            f"{where}: {who} sends kiosk queue codes {listed}, which would both publish as "
            f"{sensor!r} ({how}): two queues (a code is its characters as sent: "
            "firmware_bridge/PROTOCOL.md, QT), but sensor ids are lower case and names keys "
            "ignore case and leading zeros: their tickets would be mixed under one sensor id "
            "(wrong waiting times); not sent. Give the board's queues codes that differ in "
            f"more than case and leading zeros{_RESTARTED if kept else ''}")

    def on_message(self, msg: BoardMessage, now: float, wall: float | None = None) -> list[Out]:
        """`now`: monotonic seconds; `wall`: the node's clock (epoch s), for the kiosk
        queue codes kept across restarts."""
        name = type(msg).__name__
        self.messages[name] = self.messages.get(name, 0) + 1
        self._track_board(msg)
        if isinstance(msg, Hello):
            if self._resumed_from is not None and msg.device_id != self._resumed_from:
                self.doors = {}  # another board on this port: its totals are not ours
            self._resumed_from = None
            self._on_hello_codes(msg.device_id, msg.firmware)  # another board: codes of its own
            if self.hello is not None and (msg.device_id, msg.firmware) != (
                    self.hello.device_id, self.hello.firmware):
                self.paired.clear()  # another board's channels may be single loops
            self.hello = msg
            if msg.kind.value == "LOOP" and self.loop_readings == "vehicles":
                for ch in range(1, msg.channels + 1):
                    self.loops.setdefault(ch, _LoopAcc())
            return []
        if isinstance(msg, LoopInterval):
            return self._loop_interval(msg)
        if isinstance(msg, LoopVehicle):
            return self._loop_vehicle(msg)
        if isinstance(msg, BedWeight):
            return self._bed_weight(msg, now)
        if isinstance(msg, DoorCount):
            return self._door_count(msg)
        if isinstance(msg, TicketIssued):
            return [Out(self.queue_sensor(msg.queue, wall), "hospital.queue",
                        {"ticket": float(msg.ticket), "called": 0.0})]
        if isinstance(msg, TicketServed):
            return [Out(self.queue_sensor(msg.queue, wall), "hospital.queue",
                        {"ticket": float(msg.ticket), "called": 1.0, "counter": float(msg.counter)})]
        return self._status(msg, now)

    def close_loop_interval(self, interval_s: float) -> list[Out]:
        """`traffic.loop` per channel for an interval the driver timed (vehicles mode).
        A loop pair's readings (its channel gave a speed: `paired`) say how many vehicles
        the speed is the mean of, `speed_count`, 0 when none carried one: the cloud weights
        the lane's speed by it, not by `count`, which also holds vehicles without a speed
        (docs/wire-contract.md). A single loop's carry none, as the GPIO loops' do."""
        out = []
        for ch in sorted(self.loops):
            acc = self.loops[ch]
            values: Values = {"count": float(acc.count), "interval_s": interval_s,
                              "occupancy_pct": min(100.0, acc.on_ms / 10 / interval_s)}
            if acc.speeds:
                values["speed_kmh"] = acc.speed_sum / acc.speeds
            if ch in self.paired:
                values["speed_count"] = float(acc.speeds)
            if acc.lengths:
                values["length_m"] = acc.length_sum / acc.lengths
            out.append(Out(self.sensor(ch), "traffic.loop", values))
            self.loops[ch] = _LoopAcc()
        return out

    # -- per message type ---------------------------------------------------------------

    def _track_board(self, msg: BoardMessage) -> None:
        last, self._last = self._last, (msg.seq, msg.t_ms)
        if last is None:  # the board's first sentence after power-up, not a wrap of seq
            self._since_boot = msg.seq == 0 and msg.t_ms < BOOT_WINDOW_MS
            return
        seq, t_ms = last
        wrapped = t_ms > U32 - WRAP_MARGIN_MS and msg.t_ms < WRAP_MARGIN_MS
        if msg.t_ms < t_ms and not wrapped:
            self.reboots += 1
            self._since_boot = True
            self.doors = dict.fromkeys(self.doors, BOOT)
            return
        self.lost_sentences += (msg.seq - seq - 1) & U16

    def _loop_interval(self, msg: LoopInterval) -> list[Out]:
        if self.loop_readings != "intervals" or msg.interval_s == 0:
            self.ignored += 1
            return []
        if not divides_hour(msg.interval_s):
            # The cloud counts an interval in the hour it ends in: 2400 s would give its
            # hours 40 and 80 minutes of counts (check-config refuses it for the intervals
            # the agent times, but cannot see the board's); over 3600 s is past the
            # contract's bound. Not sent; the driver says why (UpfwDriver._refuse_uneven).
            self.uneven_intervals += 1
            if self.uneven is None:
                self.uneven = msg
            return []
        values: Values = {"count": float(msg.count), "occupancy_pct": msg.occupancy_pct,
                          "interval_s": float(msg.interval_s)}
        if msg.mean_speed_kmh is not None:
            values["speed_kmh"] = msg.mean_speed_kmh
        return [Out(self.sensor(msg.channel), "traffic.loop", values)]

    def _loop_vehicle(self, msg: LoopVehicle) -> list[Out]:
        if self.loop_readings != "vehicles":
            self.ignored += 1
            return []
        acc = self.loops.setdefault(msg.channel, _LoopAcc())
        acc.count += 1
        acc.on_ms += msg.on_ms
        if msg.speed_kmh is not None:
            acc.speed_sum += msg.speed_kmh
            acc.speeds += 1
            self.paired.add(msg.channel)
        if msg.length_m is not None:
            acc.length_sum += msg.length_m
            acc.lengths += 1
        return []

    def _bed_weight(self, msg: BedWeight, now: float) -> list[Out]:
        bed = self.beds.setdefault(msg.bed, _Bed())
        bed.occupied = msg.occupied
        bed.weight_kg = msg.weight_kg
        return self._bed_out(msg.bed, bed, now, force=False)

    def _bed_out(self, number: int, bed: _Bed, now: float, *, force: bool) -> list[Out]:
        state = (bed.occupied, bed.fault)
        if not force and state == bed.sent and now - bed.sent_at < self.bed_heartbeat_s:
            return []
        bed.sent, bed.sent_at = state, now
        return [Out(self.sensor(number), "hospital.bed",
                    {"occupied": float(bed.occupied), "fault": float(bed.fault)})]

    def _door_count(self, msg: DoorCount) -> list[Out]:
        prev = self.doors.get(msg.door)
        if prev is None and not self._since_boot:
            self.doors[msg.door] = (msg.entered, msg.t_ms)
            return []
        entered0, t0 = prev or BOOT
        dt_ms = (msg.t_ms - t0) & U32
        if dt_ms == 0:
            return []
        self.doors[msg.door] = (msg.entered, msg.t_ms)
        if (entered0, t0) == BOOT:
            # Counting from the boot (seen, or told by uptime stepping back): the total is
            # everyone since then however late this first count comes, so it is no gap. The
            # contract bounds the interval to an hour; the people may have passed earlier.
            return [Out(self.sensor(msg.door), "hospital.door",
                        {"count": float(msg.entered), "interval_s": min(dt_ms / 1000, MAX_INTERVAL_S)})]
        # Within one boot, counts more than an hour apart mean that door's sentences were
        # lost (one goes out at least every 60 s) and the people between cannot be placed in
        # an interval the contract takes; a total that fell (not a wrap past 2^32) belongs
        # to another count. Either way: a gap, and this count is the new baseline.
        fell = 0 < (entered0 - msg.entered) & U32 < 1 << 31
        if dt_ms > MAX_INTERVAL_S * 1000 or fell:
            self.door_gaps += 1
            return []
        count = (msg.entered - entered0) & U32
        return [Out(self.sensor(msg.door), "hospital.door",
                    {"count": float(count), "interval_s": dt_ms / 1000})]

    def _status(self, msg: Status, now: float) -> list[Out]:
        where = "board" if msg.channel is None else str(msg.channel)
        if msg.code is StatusCode.OK:
            if msg.channel is None:
                self.faults.clear()
            else:
                self.faults.pop(where, None)
        elif msg.code is not StatusCode.REBOOT:
            self.faults[where] = msg.code.value
        out: list[Out] = []
        for number, bed in sorted(self.beds.items()):
            fault = self.faults.get(str(number)) == "LOAD_CELL" or self.faults.get("board") == "LOAD_CELL"
            if fault != bed.fault:
                bed.fault = fault
                if fault:  # a fault is news now; its clearing shows with the next weight
                    out += self._bed_out(number, bed, now, force=True)
        if msg.code is StatusCode.LOAD_CELL and msg.channel is not None and msg.channel not in self.beds:
            bed = self.beds[msg.channel] = _Bed(fault=True)
            out += self._bed_out(msg.channel, bed, now, force=True)
        return out
