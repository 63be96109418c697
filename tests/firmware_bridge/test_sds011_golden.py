"""The SDS011 datasheet's own example frames and commands."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from firmware_bridge.errors import CommandError
from firmware_bridge.protocols.sds011 import Sds011Decoder, commands
from firmware_bridge.protocols.sds011.frames import (
    ReportMode,
    Sds011DeviceIdReply,
    Sds011FirmwareReply,
    Sds011Measurement,
    Sds011ReportModeReply,
    Sds011WorkingPeriodReply,
    Sds011WorkStateReply,
    WorkState,
)

GoldenLoader = Callable[[str], dict[str, bytes]]


@pytest.mark.parametrize(
    ("name", "built"),
    [
        ("cmd_set_report_mode_query", commands.set_report_mode(ReportMode.QUERY)),
        ("cmd_query_data", commands.query_data()),
        ("cmd_set_device_id_a001", commands.set_device_id("a001", device_id="a160")),
        ("cmd_set_sleep", commands.set_work_state(WorkState.SLEEP)),
        ("cmd_set_work", commands.set_work_state(WorkState.WORK)),
        ("cmd_set_working_period_1min", commands.set_working_period(1)),
        ("cmd_firmware_version", commands.get_firmware_version()),
    ],
)
def test_command_builders_match_datasheet(name: str, built: bytes, golden: GoldenLoader) -> None:
    assert built == golden("sds011")[name]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("data_query_reply", Sds011Measurement(pm25=123.6, pm10=261.8, device_id="a160")),
        ("reply_set_report_mode_query", Sds011ReportModeReply(True, ReportMode.QUERY, "a160")),
        ("reply_set_device_id_a001", Sds011DeviceIdReply("a001")),
        ("reply_set_sleep", Sds011WorkStateReply(True, WorkState.SLEEP, "a160")),
        ("reply_set_work", Sds011WorkStateReply(True, WorkState.WORK, "a160")),
        ("reply_set_working_period_1min", Sds011WorkingPeriodReply(True, 1, "a160")),
        ("reply_firmware_version", Sds011FirmwareReply(2015, 7, 10, "a160")),
    ],
)
def test_datasheet_frames_decode(name: str, expected: object, golden: GoldenLoader) -> None:
    decoder = Sds011Decoder()
    assert decoder.feed(golden("sds011")[name]) == [expected]
    assert decoder.stats.frames == 1
    assert decoder.stats.bytes_skipped == 0


def test_commands_as_sent_by_host_are_not_sensor_frames(golden: GoldenLoader) -> None:
    decoder = Sds011Decoder()
    for name, frame in golden("sds011").items():
        if name.startswith("cmd_"):
            assert decoder.feed(frame) == []
    assert decoder.stats.frames == 0


def test_measurement_record_has_exactly_the_documented_keys(golden: GoldenLoader) -> None:
    (frame,) = Sds011Decoder().feed(golden("sds011")["data_query_reply"])
    assert isinstance(frame, Sds011Measurement)
    assert frame.as_record() == {"pm25": 123.6, "pm10": 261.8, "device_id": "a160"}
    assert not frame.suspect_zero


def test_zero_reading_is_flagged_as_suspect() -> None:
    zero = bytes.fromhex("AA C0 00 00 00 00 A1 60 01 AB")
    (frame,) = Sds011Decoder().feed(zero)
    assert isinstance(frame, Sds011Measurement)
    assert (frame.pm25, frame.pm10) == (0.0, 0.0)
    assert frame.suspect_zero


@pytest.mark.parametrize(
    "build",
    [
        lambda: commands.set_working_period(31),
        lambda: commands.set_device_id("ffff"),
        lambda: commands.set_device_id("a16"),
        lambda: commands.query_data(device_id="zz00"),
    ],
)
def test_bad_command_arguments_are_refused(build: object) -> None:
    with pytest.raises(CommandError):
        build()  # type: ignore[operator]
