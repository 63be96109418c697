"""A upfw board's channels publish under sensor ids of their own (`<id>-<channel>`, or the
id its `names` gives the channel): one that is also another sensor's id is refused by the
config parser, naming both keys. Before, `check-config` and the agent took a upfw sensor
`door` beside a sensor `door-1`, and both devices' readings went to the cloud under
`door-1`, one series of wrong numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import parse_config
from edge.drivers.upfw.mapping import UpfwMapper
from urbanpulse.cli import main
from urbanpulse.errors import ConfigError
from urbanpulse.wire.payload import is_sensor_id

MIXED = "two devices' readings would be mixed under one sensor id"


def _raw(*sensors: dict[str, Any]) -> dict[str, Any]:
    return {"node": {"id": "n1", "site": "s1"},
            "mqtt": {"password_file": "/p", "host": "127.0.0.1", "tls": False},
            "sensors": list(sensors)}


def _upfw(sid: str, port: str, **names: str) -> dict[str, Any]:
    table: dict[str, Any] = {"id": sid, "driver": "upfw", "port": port}
    if names:
        table["names"] = {k.lstrip("_"): v for k, v in names.items()}
    return table


def _plain(sid: str, pin: int) -> dict[str, Any]:
    return {"id": sid, "driver": "bed_pad", "pin": pin}


def test_the_driver_names_channels_as_the_check_assumes() -> None:
    # what the check below stands on: the driver's own derivation
    mapper = UpfwMapper("door", {"2": "door-main"})
    assert (mapper.sensor(1), mapper.sensor(255), mapper.sensor(2)) == ("door-1", "door-255",
                                                                         "door-main")


def test_a_sensor_with_the_id_of_an_earlier_boards_channel_is_refused() -> None:
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.id: sensor id 'door-1' is already used by sensors\[0\]\.id "
            r"\(upfw sensor 'door', its channel 1 unless sensors\[0\]\.names names it\): "
            + MIXED)):
        parse_config(_raw(_upfw("door", "/dev/ttyUSB0"), _plain("door-1", 17)))


def test_a_board_whose_channel_has_an_earlier_sensors_id_is_refused() -> None:
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.id: channel 255's sensor id 'door-255' \(upfw sensor 'door'\) is "
            r"already used by sensors\[0\]\.id \(sensor 'door-255'\): " + MIXED)):
        parse_config(_raw(_plain("door-255", 17), _upfw("door", "/dev/ttyUSB0")))


def test_a_named_channel_with_another_sensors_id_is_refused() -> None:
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.names\.3: channel 3's sensor id 'bed-c303' \(upfw sensor 'beds'\) "
            r"is already used by sensors\[0\]\.id \(sensor 'bed-c303'\): " + MIXED)):
        parse_config(_raw(_plain("bed-c303", 17), _upfw("beds", "/dev/ttyUSB0", _3="bed-c303")))
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.id: sensor id 'bed-c303' is already used by sensors\[0\]\.names\.3 "
            r"\(upfw sensor 'beds', its channel 3\): " + MIXED)):
        parse_config(_raw(_upfw("beds", "/dev/ttyUSB0", _3="bed-c303"), _plain("bed-c303", 17)))


def test_a_named_channel_frees_its_default_id() -> None:
    config = parse_config(_raw(_upfw("door", "/dev/ttyUSB0", _1="door-main"),
                               _plain("door-1", 17)))
    assert [s.id for s in config.sensors] == ["door", "door-1"]


def test_two_boards_giving_one_id_are_refused() -> None:
    # the same name in two boards' names
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.names\.a: channel a's sensor id 'opd-a' \(upfw sensor 'kiosk-2'\) "
            r"is already used by sensors\[0\]\.names\.a \(upfw sensor 'kiosk-1', its channel a\)")):
        parse_config(_raw(_upfw("kiosk-1", "/dev/ttyUSB0", A="opd-a"),
                          _upfw("kiosk-2", "/dev/ttyUSB1", A="opd-a")))
    # a name of one board that is another board's default channel id
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.id: channel 3's sensor id 'icu-3' \(upfw sensor 'icu'\) is already "
            r"used by sensors\[0\]\.names\.1 \(upfw sensor 'beds', its channel 1\)")):
        parse_config(_raw(_upfw("beds", "/dev/ttyUSB0", _1="icu-3"),
                          _upfw("icu", "/dev/ttyUSB1")))
    # a board whose id is another board's channel id
    with pytest.raises(ConfigError, match=(
            r"^sensors\[1\]\.id: sensor id 'door-1' is already used by sensors\[0\]\.id "
            r"\(upfw sensor 'door', its channel 1 unless")):
        parse_config(_raw(_upfw("door", "/dev/ttyUSB0"), _upfw("door-1", "/dev/ttyUSB1")))


def test_a_name_that_is_another_channel_of_the_same_board_is_refused() -> None:
    with pytest.raises(ConfigError, match=(
            r"^sensors\[0\]\.names\.1: channel 1's sensor id 'door-2' \(upfw sensor 'door'\) is "
            r"already used by sensors\[0\]\.id \(upfw sensor 'door', its channel 2 unless")):
        parse_config(_raw(_upfw("door", "/dev/ttyUSB0", _1="door-2")))
    # swapping two channels' ids is fine, and so is naming a channel as the board
    config = parse_config(_raw(_upfw("door", "/dev/ttyUSB0", _1="door-2", _2="door-1",
                                     _3="door")))
    assert config.sensors[0].params.names == {"1": "door-2", "2": "door-1", "3": "door"}


def test_distinct_boards_and_sensors_pass() -> None:
    config = parse_config(_raw(_upfw("beds", "/dev/ttyUSB0", _1="bed-c301"),
                               _upfw("beds-icu", "/dev/ttyUSB1"),
                               _upfw("door", "/dev/ttyUSB2"),
                               _plain("door-main", 17), _plain("bed-c302", 18)))
    assert len(config.sensors) == 5


def test_check_config_refuses_a_channel_id_clash(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nid = "n1"\nsite = "s1"\n[mqtt]\nhost = "127.0.0.1"\ntls = false\n'
                    'password_file = "/p"\n'
                    '[[sensors]]\nid = "door"\ndriver = "upfw"\nport = "/dev/ttyUSB0"\n'
                    '[[sensors]]\nid = "door-1"\ndriver = "bed_pad"\npin = 17\n',
                    encoding="utf-8")
    assert main(["edge", "check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "config error: sensors[1].id: sensor id 'door-1' is already used by sensors[0].id "
        "(upfw sensor 'door', its channel 1 unless sensors[0].names names it): " + MIXED + "\n")


def test_a_board_id_too_long_for_its_channels_ids_is_refused() -> None:
    """`<id>-<channel>` is a sensor id of the wire contract, 64 characters at most: a board
    id over 60 gave channel 255 (or 100, or 10) an id the cloud rejects, every reading of
    that channel put in dead_letter."""
    sid = "b" * 61
    assert not is_sensor_id(UpfwMapper(sid).sensor(100))
    with pytest.raises(ConfigError, match=(
            rf"^sensors\[0\]\.id: channel 100's sensor id '{sid}-100' is 65 characters: "
            r"the wire contract's sensor ids have at most 64 \(the cloud would reject every "
            r"reading of the channel\); give the board an id of at most 60, or name its "
            r"channels in sensors\[0\]\.names")):
        parse_config(_raw(_upfw(sid, "/dev/ttyUSB0")))
    assert parse_config(_raw(_upfw("b" * 60, "/dev/ttyUSB0"))).sensors[0].id == "b" * 60


def _mapper(config: Any, i: int) -> UpfwMapper:
    """The driver's mapper as the agent builds it from the checked config."""
    from edge.drivers.base import DriverContext
    from edge.drivers.upfw.driver import build

    s = config.sensors[i]
    return build(s.id, s.params, DriverContext()).mapper


def test_a_kiosk_queue_publishing_as_another_sensors_id_is_refused_when_it_comes() -> None:
    """A kiosk's `<id>-<queue code>` cannot be checked before the board sends the code
    (a upfw board's kind and queues are the board's): the config passes, and the driver
    refuses the first ticket of such a queue, naming both keys. Before, a kiosk `kiosk`
    sending queue A beside a sensor `kiosk-a` put both devices' readings (and sequence
    numbers) in one series."""
    from edge.errors import DriverError
    from firmware_bridge.protocols.upfw import TicketIssued, TicketServed

    config = parse_config(_raw(_upfw("kiosk", "/dev/ttyUSB0", C="opd-c"), _plain("kiosk-a", 17),
                               _upfw("kiosk-b", "/dev/ttyUSB1")))
    mapper = _mapper(config, 0)
    # queues whose ids nobody else has, and a named one, publish as before
    assert mapper.on_message(TicketIssued(0, 0, "D", 7, 0), 0.0)[0].sensor == "kiosk-d"
    assert mapper.on_message(TicketIssued(1, 0, "C", 8, 0), 0.0)[0].sensor == "opd-c"
    with pytest.raises(DriverError, match=(
            r"^sensors\[0\]\.id: kiosk queue 'A' publishes as 'kiosk-a' \(<id>-<queue code>\), "
            r"which is already used by sensors\[1\]\.id \(sensor 'kiosk-a'\): " + MIXED
            + r"; rename one, or name the queue in sensors\[0\]\.names \(A = \"\.\.\.\"\)$")):
        mapper.on_message(TicketServed(2, 0, "A", 1, 4, 60), 0.0)
    # another board's channel (kiosk-b's channel 1) is a sensor id too
    with pytest.raises(DriverError, match=r"kiosk queue 'b-1' publishes as 'kiosk-b-1'.* "
                                          r"sensors\[2\]\.id \(upfw sensor 'kiosk-b', its channel 1"):
        mapper.on_message(TicketIssued(3, 0, "b-1", 9, 0), 0.0)
    # the board's own names: queue c named kiosk-e, queue e unnamed
    own = _mapper(parse_config(_raw(_upfw("kiosk", "/dev/ttyUSB0", C="kiosk-e"))), 0)
    with pytest.raises(DriverError, match=r"'kiosk-e' \(<id>-<queue code>\), which is already used by "
                                          r"sensors\[0\]\.names\.c"):
        own.on_message(TicketIssued(0, 0, "E", 1, 0), 0.0)
    # named, the queue frees the id
    named = parse_config(_raw(_upfw("kiosk", "/dev/ttyUSB0", A="opd-a"), _plain("kiosk-a", 17)))
    assert _mapper(named, 0).on_message(TicketIssued(0, 0, "a", 1, 0), 0.0)[0].sensor == "opd-a"


def test_a_kiosk_queue_id_too_long_for_a_sensor_id_is_refused_when_it_comes() -> None:
    from edge.errors import DriverError
    from firmware_bridge.protocols.upfw import TicketIssued

    sid = "k" * 56
    mapper = _mapper(parse_config(_raw(_upfw(sid, "/dev/ttyUSB0"))), 0)
    assert mapper.on_message(TicketIssued(0, 0, "ABCDEFG", 1, 0), 0.0)[0].sensor == f"{sid}-abcdefg"
    with pytest.raises(DriverError, match=(
            rf"^sensors\[0\]\.id: kiosk queue 'ABCDEFGH' would publish as '{sid}-abcdefgh', "
            r"65 characters: the wire contract's sensor ids have at most 64")):
        mapper.on_message(TicketIssued(1, 0, "ABCDEFGH", 2, 0), 0.0)


def test_taken_and_key_are_not_toml_keys() -> None:
    with pytest.raises(ConfigError, match=r"^sensors\[0\]\.taken: unknown key for upfw"):
        parse_config(_raw({**_upfw("kiosk", "/dev/ttyUSB0"), "taken": {}}))
