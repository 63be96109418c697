"""A site's ward snapshots of one retention policy, indexed for its per-window sums.

The site's `hospital_occupancy` of a window sums each ward's latest snapshot at or before
the window's start (`HospitalSite`). Summed afresh for each window written, a ward's update
cost a search in every ward of the site: a hospital of 100 wards, each sending a snapshot
every few minutes, paid for 100 wards at each one's update (a sixth of the processor's CPU
on the city's warm sample, docs/throughput.md "Session 26"). Here a window's sums are kept
once made: a ward's snapshot changes only the windows from its start to the ward's next
snapshot, by the difference of its parts there; a window is summed over every ward once,
when first written. A ward's part of a window depends on the window's start and its own
snapshots only (`part`), not on the time it is summed, so the kept sums stay exact.
Eviction drops snapshots older than a ward's last one before the floor, which no window
from the floor on reads, and the sums of the windows before it, which are never written.

Not pickled: `HospitalSite` makes it again from its wards."""

from __future__ import annotations

import bisect

from cloud.logic.domain.hospital import GONE_NS, STALE_NS

Ward = tuple[int, int, int, int, int]  # a ward snapshot's (beds, occupied, available, faulty, stale)


def part(keys: list[int], snaps: dict[int, Ward], start: int) -> Ward | None:
    """A ward's part of the window at `start`: its latest snapshot at or before it (`keys`:
    the starts of `snaps`, sorted); every bed stale when that is `STALE_NS` or more before
    the window (a ward silent for that long), nothing when `GONE_NS` or more, or none."""
    i = bisect.bisect_right(keys, start)
    if not i:
        return None
    at = keys[i - 1]
    if at <= start - GONE_NS:
        return None
    ward = snaps[at]
    if at > start - STALE_NS:
        return ward
    return (0, 0, 0, 0, ward[0] + ward[4])


class WindowSums:
    """`wards` (node -> window start -> snapshot, the site's own dict, changed here) with
    each ward's starts sorted, the starts any ward holds (sorted, and how many hold each),
    and the sums of the windows summed so far."""

    __slots__ = ("holders", "keys", "starts", "sums", "wards")

    def __init__(self, wards: dict[str, dict[int, Ward]]) -> None:
        self.wards = wards
        self.keys = {node: sorted(snaps) for node, snaps in wards.items()}
        self.holders: dict[int, int] = {}
        for keys in self.keys.values():
            for s in keys:
                self.holders[s] = self.holders.get(s, 0) + 1
        self.starts = sorted(self.holders)
        self.sums: dict[int, list[int]] = {}

    def put(self, node: str, start: int, ward: Ward) -> None:
        """`node`'s snapshot of the window at `start` (a new one, or a correction)."""
        snaps = self.wards.setdefault(node, {})
        keys = self.keys.setdefault(node, [])
        changed: list[tuple[int, Ward | None]] = []
        if self.sums:  # the kept windows it changes: from it to the ward's next snapshot
            i = bisect.bisect_right(keys, start)
            end = keys[i] if i < len(keys) else None
            starts = self.starts
            for j in range(bisect.bisect_left(starts, start), len(starts)):
                s = starts[j]
                if end is not None and s >= end:
                    break
                if s in self.sums:
                    changed.append((s, part(keys, snaps, s)))
        if start not in snaps:
            if not keys or start > keys[-1]:
                keys.append(start)
            else:
                bisect.insort(keys, start)
            held = self.holders.get(start, 0)
            if not held:
                bisect.insort(self.starts, start)
            self.holders[start] = held + 1
        snaps[start] = ward
        for s, before in changed:
            after = part(keys, snaps, s)
            if after is before:
                continue
            sums = self.sums[s]
            for k in range(5):
                sums[k] += (after[k] if after else 0) - (before[k] if before else 0)

    def since(self, start: int) -> list[int]:
        """The window starts any ward holds from `start` on, in order."""
        return self.starts[bisect.bisect_left(self.starts, start):]

    def total(self, start: int) -> list[int]:
        """The window's (beds, occupied, available, faulty, stale) over every ward."""
        sums = self.sums.get(start)
        if sums is None:
            sums = self.sums[start] = [0, 0, 0, 0, 0]
            for node, keys in self.keys.items():
                got = part(keys, self.wards[node], start)
                if got is not None:
                    for k in range(5):
                        sums[k] += got[k]
        return sums

    def evict(self, before: int) -> None:
        """Each ward's snapshots before `before` let go but its last one (its state there),
        and the sums of the windows before it."""
        for node, keys in self.keys.items():
            old = bisect.bisect_left(keys, before)
            if old > 1:  # the last one stays: the ward's state since then
                snaps = self.wards[node]
                for s in keys[:old - 1]:
                    del snaps[s]
                    held = self.holders[s] - 1
                    if held:
                        self.holders[s] = held
                    else:
                        del self.holders[s]
                        del self.starts[bisect.bisect_left(self.starts, s)]
                del keys[:old - 1]
        for s in [s for s in self.sums if s < before]:
            del self.sums[s]
