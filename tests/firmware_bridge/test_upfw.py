"""upfw: the spec's examples, the C reference encoder against the Python decoder, and
the emulator over a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import firmware_bridge.protocols
from firmware_bridge.errors import CommandError
from firmware_bridge.protocols import get_protocol
from firmware_bridge.protocols.upfw import (
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
    UpfwDecoder,
    UpfwFrame,
    encode,
)
from firmware_bridge.protocols.upfw import commands as upfw_commands
from firmware_bridge.protocols.upfw.emulator import UpfwEmulator
from firmware_bridge.transport import open_link

PACKAGE = Path(firmware_bridge.protocols.__file__ or "").parent.parent
FIRMWARE = PACKAGE / "firmware" / "upfw"

EXAMPLES: list[UpfwFrame] = [
    Hello(0, 1532, DeviceKind.LOOP, "lp-hn-017", "1.0.0", 2),
    LoopVehicle(42, 81234, 1, 780, 1523, 30.1, 4.6),
    LoopVehicle(43, 81502, 2, 1210, 977, None, None),
    LoopInterval(44, 90000, 1, 60, 18, 12.5, 28.7),
    BedWeight(7, 120500, 3, 68.25, True, True),
    DoorCount(8, 60000, 1, 152, 149),
    TicketIssued(12, 305000, "A", 1042, 17),
    TicketServed(13, 306000, "A", 1025, 4, 1380),
    Status(9, 61000, StatusCode.LOOP_OPEN, 2, ""),
    IdentityQuery(),
]
EDGES: list[UpfwFrame] = [
    Hello(65535, 4294967295, DeviceKind.KIOSK, "kiosk-bvbm-0001x", "2.10.3-rc1", 255),
    BedWeight(1, 0, 1, -0.35, False, False),
    BedWeight(2, 1, 255, -2147483.648, False, False),
    DoorCount(3, 2, 4, 4294967295, 0),
    LoopInterval(4, 3, 8, 300, 0, 100.0, None),
    Status(5, 4, StatusCode.REBOOT, None, "wdt"),
    LoopVehicle(6, 5, 1, 0, 0, 0.0, 0.0),
]


def spec_examples() -> list[bytes]:
    text = (PACKAGE / "PROTOCOL.md").read_text()
    return [
        m.encode() + b"\r\n"
        for m in re.findall(r"^(\$PUP[A-Z]{2},[^\s`]*\*[0-9A-F]{2})$", text, re.MULTILINE)
    ]


def test_every_example_in_the_spec_decodes_to_the_intended_message() -> None:
    lines = spec_examples()
    assert lines == [encode(m) for m in EXAMPLES]
    decoder = UpfwDecoder()
    assert decoder.feed(b"".join(lines)) == EXAMPLES
    assert decoder.stats.frames == len(EXAMPLES)


def test_records_carry_the_documented_keys() -> None:
    record = get_protocol("upfw").record
    assert record(EXAMPLES[1]) == {
        "type": "loop_vehicle", "seq": 42, "t_ms": 81234, "channel": 1, "on_ms": 780,
        "count": 1523, "speed_kmh": 30.1, "length_m": 4.6,
    }  # fmt: skip
    assert record(EXAMPLES[0]) == {
        "type": "hello", "seq": 0, "t_ms": 1532, "kind": "loop", "device_id": "lp-hn-017",
        "firmware": "1.0.0", "channels": 2,
    }  # fmt: skip
    assert record(IdentityQuery()) is None


def test_c_reference_encoder_output_is_read_exactly(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is part of the test environment"
    binary = tmp_path / "upfw_demo"
    subprocess.run(
        [
            gcc, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Werror",
            f"-I{FIRMWARE / 'src'}", str(FIRMWARE / "extras" / "host_demo.c"),
            str(FIRMWARE / "src" / "upfw.c"), "-o", str(binary),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    result = subprocess.run([str(binary)], capture_output=True, check=True, timeout=10)
    assert result.stderr == b""
    assert result.stdout == b"".join(encode(m) for m in EXAMPLES + EDGES)
    decoder = UpfwDecoder()
    assert decoder.feed(result.stdout) == EXAMPLES + EDGES
    assert (decoder.stats.bytes_skipped, decoder.stats.checksum_errors) == (0, 0)


def test_arduino_sketch_compiles_against_the_library(tmp_path: Path) -> None:
    # No AVR/ESP32 toolchain here: compile the sketch as C++ for the host against a
    # stub of the few Arduino calls it makes, to catch errors in its use of upfw.h.
    gxx = shutil.which("g++")
    assert gxx is not None
    stub = tmp_path / "Arduino.h"
    stub.write_text(
        "#pragma once\n#include <stdint.h>\n#include <stddef.h>\n"
        "#define LOW 0\n#define INPUT_PULLUP 2\n"
        "void pinMode(uint8_t, uint8_t); int digitalRead(uint8_t); uint32_t millis();\n"
        "struct SerialStub { void begin(long); int available(); int read();"
        " size_t write(const char *, size_t); };\nextern SerialStub Serial;\n"
    )
    sketch = tmp_path / "sketch.cpp"
    sketch.write_text((FIRMWARE / "examples" / "loop_detector" / "loop_detector.ino").read_text())
    subprocess.run(
        [gxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
         f"-I{tmp_path}", f"-I{FIRMWARE / 'src'}", str(sketch)],
        check=True,
        timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "line",
    [
        b"$PUPLV,1,42,81234,1,780,1523,301,46*7E\r\n",  # checksum off by one
        b"$PUPLV,1,42,81234,1,780,1523,301,46*7f\n",  # lower case hex, bare LF: valid
    ],
)
def test_checksum_is_checked_case_insensitively(line: bytes) -> None:
    decoder = UpfwDecoder()
    frames = decoder.feed(line + encode(EXAMPLES[5]))
    good = line.endswith(b"7f\n")
    assert frames == ([EXAMPLES[1]] if good else []) + [EXAMPLES[5]]
    assert decoder.stats.checksum_errors == (0 if good else 1)


@pytest.mark.parametrize(
    "body",
    [
        "PUPLV,2,42,81234,1,780,1523,301,46",  # another major version
        "PUPXX,1,1,1",  # unknown type
        "PUPLV,1,42,81234,0,780,1523,,",  # channel 0
        "PUPLV,1,42,81234,1,780",  # fields missing
        "PUPBW,1,1,1,1,12.5,1,1",  # not an integer
        "PUPHI,1,0,1,TRAIN,x,1,1",  # unknown kind
    ],
)
def test_sentences_that_break_the_protocol_are_counted_malformed(body: str) -> None:
    from firmware_bridge.protocols.upfw.wire import checksum

    line = f"${body}*{checksum(body.encode()):02X}\r\n".encode()
    decoder = UpfwDecoder()
    assert decoder.feed(line + encode(EXAMPLES[5])) == [EXAMPLES[5]]
    assert (decoder.stats.malformed, decoder.stats.checksum_errors) == (1, 0)


def test_trailing_fields_of_a_newer_minor_version_are_ignored() -> None:
    from firmware_bridge.protocols.upfw.wire import sentence

    line = sentence("DC", ["1", "8", "60000", "1", "152", "149", "7", "future"])
    assert UpfwDecoder().feed(line) == [DoorCount(8, 60000, 1, 152, 149)]


def test_cut_sentence_then_a_whole_one() -> None:
    whole = encode(EXAMPLES[1])
    decoder = UpfwDecoder()
    assert decoder.feed(whole[:20] + whole) == [EXAMPLES[1]]
    assert decoder.stats.bytes_skipped == 20


def test_encoder_refuses_bad_text() -> None:
    with pytest.raises(CommandError):
        encode(TicketIssued(1, 1, "A B", 1, 1))


def test_emulator_answers_identity_query_and_streams_numbered_messages() -> None:
    vehicles = iter(range(1, 10_000))
    emu = UpfwEmulator(
        lambda: [LoopVehicle(0, 0, 1, 700, next(vehicles))],
        device_id="lp-test-01",
        channels=1,
        period_s=0.05,
    )

    async def scenario() -> list[UpfwFrame]:
        link = await open_link(emu.port, 115200, timeout_s=2.0)
        decoder = UpfwDecoder()
        hello = await link.request(upfw_commands.identity_query(), decoder, lambda f: isinstance(f, Hello))
        frames: list[UpfwFrame] = [hello]
        while len(frames) < 4:
            frames += decoder.feed(await link.read())
        await link.close()
        return frames

    with emu:
        frames = asyncio.run(scenario())
    hello = frames[0]
    assert isinstance(hello, Hello)
    assert (hello.kind, hello.device_id, hello.channels) == (DeviceKind.LOOP, "lp-test-01", 1)
    seqs = [f.seq for f in frames if not isinstance(f, IdentityQuery)]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    vehicles_seen = [f for f in frames if isinstance(f, LoopVehicle)]
    assert [v.count for v in vehicles_seen] == sorted(v.count for v in vehicles_seen)
