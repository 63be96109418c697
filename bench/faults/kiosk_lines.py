"""What the bench city's supervised kiosks report in their node's heartbeat, from the
driver's own logic: each kiosk's loopback pair and "in service" (ready) line go through
`edge/drivers/queue_kiosk/supervision.py` `KioskSupervision` at the driver's defaults
(debounce 30 ms, a state counts once it has lasted `fault_delay_s`, 1 s), and the
heartbeat carries its `report(now)`, read through `Supervision.from_report` as the
cloud reads it.

The lines' levels come from the injected faults; these are the assumptions:

* a `cut_cable` fault opens the loopback pair, and the ready line, in the same cable,
  reads "off" with it;
* a `silence` fault is a dead kiosk, and a dead kiosk drops its "in service" output
  (a kiosk that hangs with the output still on would not be seen: its readings stop
  and only the kiosk rule on the readings can tell);
* otherwise the kiosk is powered and in service around the clock, its cable whole.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.detect.faults import Supervision
from edge.drivers.queue_kiosk.driver import QueueKioskParams
from edge.drivers.queue_kiosk.supervision import CABLE, READY, KioskSupervision
from urbanpulse.simulate import Simulation
from urbanpulse.simulate.events import Event

DEFAULTS = QueueKioskParams(issue_pin=0, call_pins=(1,), counters=(1,), supervision_pin=2,
                            ready_pin=3)
WARM_S = 600.0  # the drivers start this long before the run


@dataclass
class _Kiosk:
    sensor: str
    faults: tuple[Event, ...]
    lines: KioskSupervision
    t: float = -WARM_S  # the lines' changes before this have been fed

    def _levels(self, t: float) -> tuple[bool, bool]:
        """(loopback whole, in service) at `t`."""
        cut = any(f.type == "cut_cable" and f.start_s <= t < f.end_s for f in self.faults)
        dead = any(f.type == "silence" and f.start_s <= t < f.end_s for f in self.faults)
        return not cut, not (cut or dead)

    def report(self, now: float) -> Supervision:
        changes = sorted({x for f in self.faults for x in (f.start_s, f.end_s)
                          if self.t <= x < now})
        for t in changes:
            self.lines.poll(t)
            cable, ready = self._levels(t)
            self.lines.feed(CABLE, cable, t)
            self.lines.feed(READY, ready, t)
        self.t = now
        self.lines.poll(now)
        return Supervision.from_report(self.lines.report(now))


class KioskLines:
    """Each supervised kiosk's entry in its node's heartbeats; `reports` is called with
    times in increasing order."""

    def __init__(self, sim: Simulation) -> None:
        self._kiosks: dict[tuple[str, str], list[_Kiosk]] = {}
        for n in sim.nodes:
            for s in n.sensors:
                if s.driver != "queue_kiosk":
                    continue
                faults = tuple(e for e in sim.events if e.site == n.site and e.node == n.node
                               and e.sensor == s.id and e.type in ("cut_cable", "silence"))
                lines = KioskSupervision(
                    lines=DEFAULTS.supervision_lines, levels=(True, True), t0=-WARM_S,
                    bounce_s=DEFAULTS.debounce_s, delay_s=DEFAULTS.fault_delay_s,
                    whole_level=True)
                self._kiosks.setdefault((n.site, n.node), []).append(_Kiosk(s.id, faults, lines))

    def reports(self, site: str, node: str, times: list[float]
                ) -> list[dict[str, Supervision]]:
        return [{k.sensor: k.report(t) for k in self._kiosks.get((site, node), [])}
                for t in times]
