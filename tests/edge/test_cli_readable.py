"""What a technician reads: `edge status` says the outbox and the MQTT link in words and UTC
times (`--json` keeps the heartbeat's fields as they are); `check-config` counts "1 sensor";
an unknown driver lists the known ones as a list, not a Python tuple; a GPIO pin 0 or 1
(the HAT ID EEPROM's I2C bus, kept for the firmware) is refused naming the key; each
driver's sample is a node of its own. Before: `outbox: {'depth': 1, ...}`, `mqtt:
{'connected': True, ..., 'last_publish_ns': 1796043907577387000, ...}`, `1 sensors`,
`known: ('sds011', ...)`, pin 0 accepted, three samples all node `ward-a`."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.agent import STATE_FILE, Agent
from edge.config import load_config, parse_config
from edge.drivers.base import Sample
from urbanpulse.cli import main
from urbanpulse.clock import FakeClock
from urbanpulse.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted(REPO.glob("edge/drivers/*/sample.toml"))
SDS011 = REPO / "edge/drivers/sds011/sample.toml"
BED_PAD = REPO / "edge/drivers/bed_pad/sample.toml"
T0 = datetime(2026, 11, 30, 13, 45, 7, 577387, tzinfo=UTC)


def _node(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(SDS011.read_text().replace('state_dir = "/var/lib/urbanpulse"',
                                               f'state_dir = "{tmp_path}"'))
    return path


def _status_with_mqtt(tmp_path: Path, mqtt: dict[str, object]) -> None:
    """The real agent's state file (one reading committed), its heartbeat's `mqtt` part as
    the publisher would have said it."""
    clock = FakeClock(T0)
    agent = Agent(load_config(_node(tmp_path)), clock=clock)
    agent.outbox.open()
    try:
        agent.emitter(agent.drivers["pm-1"])(
            Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now()))
        agent.flush()
        agent.write_state()
    finally:
        agent.outbox.close()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    state["health"]["mqtt"] = mqtt
    (tmp_path / STATE_FILE).write_text(json.dumps(state))


MQTT = {"connected": True, "connects": 2, "last_error": None,
        "last_publish_ns": 1796043907577387000, "last_ack_ns": 1796043908000000000,
        "readings_acked": 1200, "rejected": 0, "refused": 0, "last_refusal": None,
        "inflight": 1, "awaiting_cloud": 0, "resent_batches": 0, "resend_wait_s": None,
        "next_resend_in_s": None}


def test_edge_status_prints_readable_fields_and_utc_times(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _status_with_mqtt(tmp_path, MQTT)
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
    lines = {line[:10]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["outbox:   "].startswith("outbox:    1 readings waiting, the oldest committed ")
    assert lines["outbox:   "].endswith(" s ago; 0 evicted")
    assert "{" not in lines["outbox:   "]
    assert lines["mqtt:     "] == (
        "mqtt:      connected to mqtt.example.org:8883 as user 'hn-hoankiem.aq-01' (2 connects); "
        "last publish 2026-11-30 13:05:07 UTC, last ack 2026-11-30 13:05:08 UTC; 1200 readings "
        "acked, 1 batches in flight; last error: none")


def test_edge_status_before_any_publish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _status_with_mqtt(tmp_path, {**MQTT, "connected": False, "connects": 0, "last_publish_ns": None,
                                 "last_ack_ns": None, "readings_acked": 0, "inflight": 0,
                                 "last_error": "connect to mqtt.example.org:8883: timed out"})
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml")]) == 0
    mqtt = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("mqtt:"))
    assert mqtt == ("mqtt:      NOT connected to mqtt.example.org:8883 as user 'hn-hoankiem.aq-01' "
                    "(0 connects); last publish never, last ack never; 0 readings acked, 0 batches "
                    "in flight; last error: connect to mqtt.example.org:8883: timed out")


def test_edge_status_json_keeps_the_heartbeats_fields(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _status_with_mqtt(tmp_path, MQTT)
    assert main(["edge", "status", "--config", str(tmp_path / "node.toml"), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["agent"]["health"]["mqtt"] == MQTT
    assert set(body["outbox"]) == {"depth", "evicted", "oldest_age_s"}
    assert body["outbox"]["depth"] == 1


def test_check_config_counts_one_sensor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["edge", "check-config", str(_node(tmp_path))]) == 0
    assert capsys.readouterr().out.endswith(": ok (node hn-hoankiem/aq-01, 1 sensor)\n")


def test_an_unknown_driver_lists_the_known_ones(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = _node(tmp_path)
    path.write_text(path.read_text().replace('driver = "sds011"', 'driver = "sds012"'))
    assert main(["edge", "check-config", str(path)]) == 2
    assert capsys.readouterr().err == (
        "config error: sensors[0].driver: unknown driver 'sds012' (known: sds011, pms5003, mhz19b, "
        "upfw, traffic_loop, bed_pad, door_counter, queue_kiosk, bed_mat)\n")


@pytest.mark.parametrize(("pin", "line"), [(0, "ID_SD"), (1, "ID_SC")])
def test_the_hat_id_eeprom_pins_are_refused_naming_the_key(pin: int, line: str) -> None:
    raw = tomllib.loads(BED_PAD.read_text())
    raw["sensors"][0]["supervision_pin"] = pin
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert err.value.key == "sensors[0].supervision_pin"
    assert err.value.reason.startswith(f"GPIO {pin} ({line}) is the I2C bus of the HAT ID EEPROM")
    assert err.value.reason.endswith("use GPIO 2..27")
    raw["sensors"][0]["supervision_pin"] = 2  # the lowest a sensor may use
    assert parse_config(raw).sensors[0].params.pins == (22, 2)


def test_each_sample_is_a_node_of_its_own() -> None:
    nodes: dict[tuple[str, str], str] = {}
    for sample in SAMPLES:
        raw = tomllib.loads(sample.read_text())
        node = (raw["node"]["site"], raw["node"]["id"])
        assert node not in nodes, f"{sample.parent.name} is node {node} as {nodes.get(node)} is"
        nodes[node] = sample.parent.name
        assert raw["mqtt"]["username"] == f"{node[0]}.{node[1]}", sample
    locations = [tomllib.loads(s.read_text())["node"]["location"] for s in SAMPLES]
    assert len(set(locations)) == len(locations)
