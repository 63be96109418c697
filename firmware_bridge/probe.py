"""Find out what is connected to a serial port: listen, then ask, at each known rate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from firmware_bridge.decoding import FrameDecoder
from firmware_bridge.errors import LinkTimeoutError
from firmware_bridge.protocols import ProtocolSpec, get_protocol, protocol_names
from firmware_bridge.protocols.pms5003.frames import Pms5003tMeasurement
from firmware_bridge.transport import open_link


@dataclass(frozen=True)
class ProbeResult:
    protocol: str
    baudrate: int
    title: str
    sample: dict[str, object] | None


def _looks_like_plain_pms5003(frame: Pms5003tMeasurement) -> bool:
    """Both variants share the frame. In a PMS5003 words 11-12 are counts of > 5 µm and
    > 10 µm particles, never more than the > 2.5 µm count and never rising with size; in
    a PMS5003T they are temperature and humidity × 10."""
    w11 = round(frame.temperature_c * 10) & 0xFFFF
    w12 = round(frame.humidity_pct * 10)
    return w12 <= w11 <= frame.n2_5


async def _listen(
    port: str, baudrate: int, specs: list[ProtocolSpec], seconds: float, ask: bool
) -> list[tuple[ProtocolSpec, object]]:
    decoders: list[tuple[ProtocolSpec, FrameDecoder[object]]] = [(s, s.new_decoder()) for s in specs]
    found: list[tuple[ProtocolSpec, object]] = []
    link = await open_link(port, baudrate, timeout_s=max(seconds, 0.5))
    try:
        if ask:
            for spec in specs:
                if spec.probe_request is not None:
                    await link.write(spec.probe_request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not found and (remaining := deadline - loop.time()) > 0:
            try:
                data = await link.read(timeout_s=remaining)
            except LinkTimeoutError:
                break
            for spec, decoder in decoders:
                frames = decoder.feed(data)
                if frames:
                    found.append((spec, frames[0]))
    finally:
        await link.close()
    return found


async def probe(port: str, listen_s: float = 2.5, ask_s: float = 1.0) -> list[ProbeResult]:
    """Try every registered protocol at its rate: first listen (devices that talk on
    their own), then send each protocol's harmless probe request. Raises SerialLinkError
    if the port cannot be opened."""
    specs = [get_protocol(name) for name in protocol_names()]
    rates = sorted({s.baudrate for s in specs})
    for baudrate in rates:
        group = [s for s in specs if s.baudrate == baudrate]
        found = await _listen(port, baudrate, group, listen_s, ask=False)
        if not found:
            found = await _listen(port, baudrate, group, ask_s, ask=True)
        if found:
            return [_result(spec, frame, baudrate) for spec, frame in _disambiguate(found)]
    return []


def _disambiguate(found: list[tuple[ProtocolSpec, object]]) -> list[tuple[ProtocolSpec, object]]:
    names = {spec.name for spec, _ in found}
    if {"pms5003", "pms5003t"} <= names:
        t_frame = next(f for s, f in found if s.name == "pms5003t")
        drop = (
            "pms5003t"
            if isinstance(t_frame, Pms5003tMeasurement) and _looks_like_plain_pms5003(t_frame)
            else "pms5003"
        )
        found = [(s, f) for s, f in found if s.name != drop]
    return found


def _result(spec: ProtocolSpec, frame: object, baudrate: int) -> ProbeResult:
    return ProbeResult(spec.name, baudrate, spec.title, spec.record(frame))
