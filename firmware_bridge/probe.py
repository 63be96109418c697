"""Find out what is connected to a serial port: listen, then ask, at each known rate."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from firmware_bridge.decoding import FrameDecoder
from firmware_bridge.errors import LinkTimeoutError
from firmware_bridge.protocols import ProtocolSpec, get_protocol, protocol_names
from firmware_bridge.protocols.pms5003.decoder import Pms5003Decoder
from firmware_bridge.protocols.pms5003.frames import Pms5003Measurement
from firmware_bridge.protocols.pms5003.model import tell_model
from firmware_bridge.transport import SerialLink, open_link

TELL_S = 12.0  # six frames of a PMS5003 in stable active mode (one each 2.3 s)
TELL_FRAMES = 6
ASK_EVERY_S = 1.0


@dataclass(frozen=True)
class ProbeResult:
    protocol: str
    baudrate: int
    title: str
    sample: dict[str, object] | None


async def _listen(
    port: str, baudrate: int, specs: list[ProtocolSpec], seconds: float, ask: bool, tell_s: float
) -> tuple[list[tuple[ProtocolSpec, object]], str | None]:
    """The first frame each protocol decoded within `seconds`; when both PMS5003 models
    decode it, the model that more frames (within `tell_s` more) show, None if they
    cannot tell."""
    decoders: list[tuple[ProtocolSpec, FrameDecoder[object]]] = [(s, s.new_decoder()) for s in specs]
    found: list[tuple[ProtocolSpec, object]] = []
    model: str | None = None
    link = await open_link(port, baudrate, timeout_s=max(seconds, 0.5))
    try:
        if ask:
            await _ask(link, specs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pms_frames: list[Pms5003Measurement] = []
        while not found and (remaining := deadline - loop.time()) > 0:
            try:
                data = await link.read(timeout_s=remaining)
            except LinkTimeoutError:
                break
            for spec, decoder in decoders:
                frames = decoder.feed(data)
                if frames:
                    found.append((spec, frames[0]))
                if spec.name == "pms5003":
                    pms_frames += [f for f in frames if isinstance(f, Pms5003Measurement)]
        if {"pms5003", "pms5003t"} <= {spec.name for spec, _ in found}:
            model = await _tell_pms_model(link, specs, pms_frames, ask, tell_s)
    finally:
        await link.close()
    return found, model


async def _ask(link: SerialLink, specs: list[ProtocolSpec]) -> None:
    for spec in specs:
        if spec.probe_request is not None:
            await link.write(spec.probe_request)


async def _tell_pms_model(link: SerialLink, specs: list[ProtocolSpec], frames: list[Pms5003Measurement],
                          ask: bool, tell_s: float) -> str | None:
    """Read PMS5003 frames until `tell_model` decides, `TELL_FRAMES` have come or `tell_s`
    has passed. A sensor that only answers is asked once every `ASK_EVERY_S`, so that its
    frames are as far apart as an active one's."""
    decoder = Pms5003Decoder()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + tell_s
    next_ask = loop.time() + ASK_EVERY_S
    while (model := tell_model(frames)) is None and len(frames) < TELL_FRAMES:
        now = loop.time()
        if now >= deadline:
            break
        if ask and now >= next_ask:
            await _ask(link, specs)
            next_ask = now + ASK_EVERY_S
        wait = min(deadline, next_ask) - now if ask else deadline - now
        try:
            data = await link.read(timeout_s=max(wait, 0.001))
        except LinkTimeoutError:
            continue
        frames += [f for f in decoder.feed(data) if isinstance(f, Pms5003Measurement)]
    return model


async def probe(port: str, listen_s: float = 2.5, ask_s: float = 1.0,
                tell_s: float = TELL_S) -> list[ProbeResult]:
    """Try every registered protocol at its rate: first listen (devices that talk on
    their own), then send each protocol's harmless probe request. A PMS5003 and a
    PMS5003T send the same frame: up to `tell_s` more of listening tells them apart
    (firmware_bridge.protocols.pms5003.model), and when even that cannot, both are
    returned. Raises SerialLinkError if the port cannot be opened."""
    specs = [get_protocol(name) for name in protocol_names()]
    rates = sorted({s.baudrate for s in specs})
    for baudrate in rates:
        group = [s for s in specs if s.baudrate == baudrate]
        found, model = await _listen(port, baudrate, group, listen_s, False, tell_s)
        if not found:
            found, model = await _listen(port, baudrate, group, ask_s, True, tell_s)
        if found:
            return [_result(spec, frame, baudrate) for spec, frame in _disambiguate(found, model)]
    return []


def _disambiguate(found: list[tuple[ProtocolSpec, object]],
                  model: str | None) -> list[tuple[ProtocolSpec, object]]:
    """Leave out the PMS5003 model that the frames ruled out (both when they could not tell)."""
    if model is None:
        return found
    other = {"pms5003": "pms5003t", "pms5003t": "pms5003"}[model]
    return [(s, f) for s, f in found if s.name != other]


def _result(spec: ProtocolSpec, frame: object, baudrate: int) -> ProbeResult:
    return ProbeResult(spec.name, baudrate, spec.title, spec.record(frame))
