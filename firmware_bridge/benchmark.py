"""Decoder throughput: frames per second on clean streams, MB/s on pure garbage.

Run with `python -m firmware_bridge.benchmark [--seconds S]`; a `bench/` script can
call `main`."""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence

from firmware_bridge.protocols import get_protocol, protocol_names
from firmware_bridge.protocols.mhz19b import wire as mhz_wire
from firmware_bridge.protocols.pms5003 import wire as pms_wire
from firmware_bridge.protocols.pms5003.emulator import reading, reading_t
from firmware_bridge.protocols.sds011 import wire as sds_wire
from firmware_bridge.protocols.upfw import LoopVehicle, encode

_CHUNK = 4096


def sample_frame(protocol: str) -> bytes:
    if protocol == "sds011":
        return sds_wire.encode_measurement(35.2, 61.0, "a160")
    if protocol == "pms5003":
        return pms_wire.encode_measurement(reading(35, 61))
    if protocol == "pms5003t":
        return pms_wire.encode_measurement(reading_t(35, 61))
    if protocol == "mhz19b":
        return mhz_wire.encode_reading(820, 29)
    return encode(LoopVehicle(42, 81234, 1, 780, 1523, 30.1, 4.6))


def _rate(protocol: str, data: bytes, seconds: float) -> tuple[float, int]:
    """Bytes per second decoding `data` in 4 KiB chunks, and frames per pass."""
    spec = get_protocol(protocol)
    passes = 0
    frames = 0
    start = time.perf_counter()
    while True:
        decoder = spec.new_decoder()
        for i in range(0, len(data), _CHUNK):
            decoder.feed(data[i : i + _CHUNK])
        frames = decoder.stats.frames
        passes += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return passes * len(data) / elapsed, frames


def run(seconds: float, out: list[str]) -> None:
    garbage = random.Random(1).randbytes(1 << 20)
    out.append(f"{'protocol':<10} {'frames/s':>12} {'MB/s clean':>11} {'MB/s garbage':>13}")
    for protocol in protocol_names():
        frame = sample_frame(protocol)
        clean = frame * ((1 << 20) // len(frame))
        clean_bps, frames = _rate(protocol, clean, seconds)
        garbage_bps, _ = _rate(protocol, garbage, seconds)
        frames_per_s = clean_bps / len(clean) * frames
        out.append(
            f"{protocol:<10} {frames_per_s:>12,.0f} {clean_bps / 1e6:>11.1f} {garbage_bps / 1e6:>13.1f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firmware_bridge.benchmark", description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args(argv)
    lines: list[str] = []
    run(args.seconds, lines)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
