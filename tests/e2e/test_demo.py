"""The README's demo command, run as a user would, on its own stack (home and free ports):
the default Hanoi city, its live subset through real edge agents on emulated devices (Bach
Mai's behind a site broker and a real `urbanpulse gateway run`), the rest of the city in
lightweight mode, the summary read back from InfluxDB."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import StackConfig, down, status
from urbanpulse.testing import wait_for

# The live subset the demo picks from the default city (docs/demo.md).
LIVE = {
    "hoan-kiem-lake/aq-1": "air",
    "nga-tu-so/aq-roadside": "air",
    "nga-tu-so/cabinet": "traffic",
    "kim-lien/cabinet": "traffic",
    "bach-mai/ward-resp": "ward",
}
# The live hospital's nodes, behind the demo's site gateway (docs/demo.md).
GATEWAY_SITE = "bach-mai"
BEHIND_GATEWAY = ("ward-resp", "er-gate")
CLOSING = re.compile(r"^site gateway bach-mai/gw-1: stopped with exit code (\d+); offline; relays "
                     r"(\d+) sent, (\d+) acknowledged by the cloud, (\d+) in flight; (\d+) node "
                     r"messages relayed", re.M)


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def _section(frame: str, title: str) -> list[str]:
    lines = frame.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    out = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        out.append(line)
    return out


def _cmdlines() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                            .decode(errors="replace")))
            except OSError:
                continue  # gone meanwhile
    return out


def _gateway_site(config: StackConfig) -> dict[str, Any]:
    """What the cloud stored of the nodes behind the gateway: per sensor the sequence
    numbers of its raw readings, the nodes' ledger, and the outbox depth their offline
    statuses gave (relayed by the gateway at each stop)."""
    info = status(config)
    reader = info.influx("reader")
    where = f"site = '{GATEWAY_SITE}' AND (" + " OR ".join(
        f"node = '{n}'" for n in BEHIND_GATEWAY) + ")"
    with InfluxHTTP(reader.url, reader.username, reader.password()) as client:
        seqs: dict[str, list[int]] = {}
        for row in client.query_points(f"SELECT seq FROM raw./^hospital_/ WHERE {where} "
                                       "GROUP BY node, sensor", db=info.database):
            seqs.setdefault(f"{row['node']}/{row['sensor']}", []).append(int(row["seq"]))
        (ledger,) = client.query_points(
            "SELECT sum(received) AS received, sum(duplicates) AS duplicates, sum(missing) AS "
            f"missing FROM agg_1h.ledger WHERE {where}", db=info.database)
        offline = client.query_points(
            f"SELECT state, outbox_depth FROM raw.node_status WHERE {where} AND "
            "state = 'offline' GROUP BY node", db=info.database)
    depths: dict[str, list[float | None]] = {}
    for row in offline:
        depths.setdefault(row["node"], []).append(row["outbox_depth"])
    return {"seqs": seqs, "ledger": ledger, "offline": depths}


def _killed_after(command: list[str], env: dict[str, str], out: Path, frames: int
                  ) -> subprocess.CompletedProcess[str]:
    """The demo run until it has shown `frames` summaries, then sent SIGTERM."""
    with out.open("w") as sink:
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: out.read_text().count("urbanpulse demo — ") >= frames
                     or proc.poll() is not None, 120, f"{frames} summaries", every_s=0.5)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return subprocess.CompletedProcess(command, proc.returncode, out.read_text(), err)


def test_demo_runs_hanoi_through_the_pipeline_and_shows_live_data(tmp_path: Path) -> None:
    mqtt, influx, rpc = _free_ports(3)
    home = tmp_path / "home"
    env = dict(os.environ, URBANPULSE_HOME=str(home), URBANPULSE_MQTT_PORT=str(mqtt),
               URBANPULSE_INFLUX_PORT=str(influx), URBANPULSE_INFLUX_RPC_PORT=str(rpc))
    demo = [sys.executable, "-m", "urbanpulse.cli", "demo", "--duration"]
    config = StackConfig(home=home, mqtt_port=mqtt, influx_port=influx, influx_rpc_port=rpc)
    try:
        out = subprocess.run([*demo, "30"], env=env, capture_output=True, text=True, timeout=150,
                             check=False)
        # Run again on the same stack: the city's back-filled minutes go back before the
        # first run's end, which the lightweight nodes must not send again under new numbers.
        # This one is stopped by a `kill` (SIGTERM), as Ctrl-C stops it.
        again = _killed_after(demo[:-1], env, tmp_path / "again.out", frames=10)
        ours = [str(home / "demo" / "cloud.toml"), str(home / "demo" / "gateway.toml"),
                str(home / "sites" / GATEWAY_SITE / "mosquitto.conf")]
        left = [cmd for _, cmd in _cmdlines() if any(path in cmd for path in ours)]
        assert not left, f"outlived the demo: {left}"
        behind = _gateway_site(config)
    finally:
        down(config)
    # `stack down` after the demo: nothing of the home runs any more.
    left = [cmd for _, cmd in _cmdlines() if str(home) in cmd]
    assert not left, f"outlived `stack down`: {left}"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "stopping ..." in again.stdout
    # the second run back-fills only what the first had not published
    first_fill = re.search(r"(\d+) s of it back-filled", out.stdout)
    second_fill = re.search(r"(\d+) s of it back-filled", again.stdout)
    assert first_fill is not None, out.stdout[-2000:]
    assert second_fill is not None, again.stdout[-2000:]
    assert int(first_fill[1]) == 300 > int(second_fill[1]), (first_fill[0], second_fill[0])
    assert "done. The data stays in InfluxDB" in again.stdout
    events = _section(again.stdout.split("urbanpulse demo — ")[-1], "anomalies and sensor faults")
    assert not [e for e in events if "clock_jump" in e or "silence" in e], events
    frames = out.stdout.split("urbanpulse demo — ")
    last = frames[-1]

    rates = dict(re.findall(r"^  ([a-z]+\.[a-z0-9]+) +([0-9.]+)$", last, re.M))
    for kind in ("air.pm", "traffic.loop", "hospital.bed", "hospital.door"):
        assert float(rates.get(kind, 0)) > 0, (kind, last)

    # Rows of the live nodes (marked *) carry data that only their edge agents send.
    air = _section(last, "air quality")
    traffic = _section(last, "traffic per intersection")
    wards = _section(last, "hospital wards")
    for key, where in LIVE.items():
        rows = {"air": air, "traffic": traffic, "ward": wards}[where]
        assert any(row.split()[:2] == [key, "*"] for row in rows), (key, last)
    ward = next(row for row in wards if row.split()[0] == "bach-mai/ward-resp")
    counts = re.search(r"(\d+) / (\d+)", ward)
    assert counts is not None, ward
    assert int(counts[2]) == 24, ward
    assert 0 < int(counts[1]) <= 24, ward
    assert any(row.split()[0] == "bach-mai" for row in _section(last, "hospitals")), last
    # A lightweight ward: every bed reported, the back-filled minutes included. Its beds
    # that did not change state in the demo's seconds are known from those minutes only,
    # which the broker dropped when they were sent before the processor subscribed.
    from urbanpulse.simulate import City

    beds = len([s for s in City.load().node("bach-mai", "ward-cardio").sensors
                if s.driver == "bed_pad"])
    cardio = next(row for row in wards if row.split()[0] == "bach-mai/ward-cardio")
    counts = re.search(r"(\d+) / (\d+)", cardio)
    assert counts is not None, cardio
    assert int(counts[2]) == beds, (beds, cardio)

    # The lightweight rest of the city arrives too: more nodes report than run live.
    reporting = re.search(r"(\d+) nodes reporting", last)
    assert reporting is not None, last
    assert int(reporting[1]) > len(LIVE) + 1, last
    assert "lightweight: 0 readings" not in out.stdout
    assert "missing 0" in last, last
    assert "dead letters (1 h): 0" in last, last

    # Bach Mai's live nodes published to the site broker only, and reached the cloud in the
    # gateway's relays, each reading once: none missing or doubled, every outbox emptied
    # by the cloud's acks the gateway passed on.
    plan = json.loads((home / "demo" / "nodes.json").read_text())["gateway"]
    assert (plan["user"], plan["nodes"]) == ("bach-mai.gw-1", list(BEHIND_GATEWAY)), plan
    for node in BEHIND_GATEWAY:
        toml = (home / "demo" / f"{GATEWAY_SITE}.{node}.toml").read_text()
        assert f"port = {plan['site_broker'].split(':')[1]}\n" in toml, toml
    for run in (out.stdout, again.stdout):
        closing = CLOSING.search(run)
        assert closing is not None, run[-3000:]
        code, sent, acked, inflight, relayed = map(int, closing.groups())
        assert (code, inflight, acked) == (0, 0, sent), closing[0]
        assert relayed >= sent > 0, closing[0]
    section = _section(last, "site gateway bach-mai/gw-1")
    assert section[0].startswith("  online (site broker subscribed, cloud broker subscribed)"), last
    assert "duplicates 0, missing 0" in section[1], section
    seqs = behind["seqs"]
    assert {key.split("/")[0] for key in seqs} == set(BEHIND_GATEWAY), seqs
    for key, numbers in seqs.items():
        assert sorted(numbers) == list(range(len(numbers))), key
    ledger = behind["ledger"]
    assert (ledger["received"], ledger["duplicates"], ledger["missing"]) == (
        sum(map(len, seqs.values())), 0, 0), ledger
    # Each stop: the node's offline status, its outbox empty (not a will: no health).
    depths = behind["offline"]
    assert set(depths) == set(BEHIND_GATEWAY), depths
    assert all(d == 0 for node in BEHIND_GATEWAY for d in depths[node]), depths

    truth = home / "demo" / "ground_truth.jsonl"
    assert f"{truth}" in out.stdout
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert {r["type"] for r in records} >= {"spikes", "incident", "stuck"}, records
    assert "The data stays in InfluxDB" in out.stdout


# --- the live subset's choice and wiring, without a stack ------------------------------


def test_live_subset_of_hanoi_and_its_agent_configs_pass_edge_validation() -> None:
    from edge.config import parse_config
    from urbanpulse.demo.live import choose_live, node_config
    from urbanpulse.simulate import City

    city = City.load()
    live = choose_live(city)
    assert [f"{n.site}/{n.node}" for n in live] == [*LIVE, "bach-mai/er-gate"]
    mqtt = {"host": "127.0.0.1", "port": 8883, "ca_file": "/ca.pem",
            "password_file": "/node.password"}
    for node in live:
        ports = {s.id: f"/dev/demo-{s.id}" for s in node.sensors if not s.pins}
        config = parse_config(node_config(node, mqtt, Path("/state"), ports))
        spec = city.node(node.site, node.node)
        assert [s.id for s in config.sensors] == [s.id for s in spec.sensors
                                                  if s.driver != "mhz19b"]
        lines = [line for s in node.sensors for line in s.pins.values()]
        assert len(lines) == len(set(lines))
        for sensor in config.sensors:
            if sensor.driver == "traffic_loop":
                params = spec.sensor(sensor.id).params
                assert sensor.params.pair.distance_m == params["loop_spacing_m"]
                assert sensor.params.pair.loop_length_m == params["loop_length_m"]
            if sensor.driver == "bed_pad":
                assert sensor.params.exit_tolerance_s == \
                    spec.sensor(sensor.id).params["exit_tolerance_s"]


def test_a_city_without_the_live_devices_is_refused_by_name() -> None:
    import pytest

    from urbanpulse.demo.live import choose_live
    from urbanpulse.errors import ConfigError
    from urbanpulse.simulate import City

    city = City.parse('[city]\nname = "empty"\n')
    with pytest.raises(ConfigError, match="air_station: the demo needs 2 stations"):
        choose_live(city)


def test_a_held_line_keeps_its_level_when_the_agent_sets_the_pull() -> None:
    from gpiozero import DigitalInputDevice

    from urbanpulse.demo.pins import pin_factory

    factory = pin_factory()
    try:
        factory.pin(5).hold(False)  # a loaded bed pad pulls the line low
        pad = DigitalInputDevice(5, pull_up=True, pin_factory=factory)
        assert pad.is_active  # active low: the agent sees the patient at start-up
        free = DigitalInputDevice(6, pull_up=True, pin_factory=factory)
        assert not free.is_active  # a line nobody drives follows its pull
        pad.close()
        free.close()
    finally:
        factory.close()


def test_every_live_gpio_line_opens_with_the_wiring_its_agent_is_given() -> None:
    """A loop card's line is pulled down; BCM 2 and 3 have fixed pull-ups (gpiozero refuses
    another pull there), and the demo once gave them to the first lane of each live
    intersection, which never reported (its driver restarted for ever)."""
    from gpiozero import DigitalInputDevice

    from edge.config import parse_config
    from urbanpulse.demo.live import choose_live, node_config
    from urbanpulse.demo.pins import pin_factory
    from urbanpulse.simulate import City

    mqtt = {"host": "127.0.0.1", "port": 8883, "ca_file": "/ca.pem",
            "password_file": "/node.password"}
    opened = 0
    for node in choose_live(City.load()):
        ports = {s.id: f"/dev/demo-{s.id}" for s in node.sensors if not s.pins}
        config = parse_config(node_config(node, mqtt, Path("/state"), ports))
        factory = pin_factory()
        try:
            for sensor in config.sensors:
                if sensor.driver == "sds011":
                    continue
                pull_up, active_state, _ = sensor.params.wiring.gpiozero_args()
                for pin in sensor.params.pins:
                    DigitalInputDevice(pin, pull_up=pull_up, active_state=active_state,
                                       pin_factory=factory)
                    opened += 1
        finally:
            factory.close()
    assert opened > 20
