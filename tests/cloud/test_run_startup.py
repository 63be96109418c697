"""`cloud run`'s start-up. One whose InfluxDB secret file cannot be read (not deployed yet, a wrong mode):
it used to stop at once (exit 3; systemd restarting it every 5 s never got its ingest
running), and the broker queues only `max_queued_messages` for the ingest. Now the
ingest starts first and journals, the processor logs which file it cannot read and waits
for it, then runs. Real broker, real InfluxDB, real `cloud run`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cloud.cli import main as cloud_main
from cloud.cli import unreadable_secrets
from cloud.config import parse_cloud_config
from cloud.ingest import InstanceLock
from cloud.stack_config import cloud_config_for_stack, to_toml
from tests.cloud.test_write_refused import (
    _journal_batches,
    _journaled_data,
    _publish_as_node,
    _raw_pm,
    start_cloud_for_site,
)
from tests.conftest import CloudProcess
from urbanpulse.influx_http import InfluxHTTP
from urbanpulse.stack import MqttCredentials, StackInfo
from urbanpulse.testing import wait_for


def test_unreadable_secrets_names_each_key_and_file(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    https = parse_cloud_config({"mqtt": {"password_file": "m", "ca_file": "c"},
                                "influx": {"url": "https://influx.example:8086",
                                           "password_file": str(not_pem), "ca_file": str(not_pem)}})
    [ca] = unreadable_secrets(https)
    assert ca.startswith(f"influx.ca_file {not_pem}: no PEM certificate could be read from it")
    readable = tmp_path / "writer.password"
    readable.write_text("x\n")
    cfg = parse_cloud_config({"mqtt": {"password_file": "m", "ca_file": "c"},
                              "influx": {"password_file": str(readable),
                                         "reader_password_file": str(tmp_path / "nope")}})
    assert unreadable_secrets(cfg) == [
        f"influx.reader_password_file {tmp_path / 'nope'}: No such file or directory"]
    v2 = parse_cloud_config({"mqtt": {"password_file": "m", "ca_file": "c"},
                             "influx": {"api": "v2", "token_file": str(tmp_path / "token")}})
    assert unreadable_secrets(v2) == [f"influx.token_file {tmp_path / 'token'}: No such file or directory"]


@pytest.mark.stack
@pytest.mark.slow
def test_cloud_run_ingests_while_it_waits_for_its_influxdb_password_file_then_writes_it_all(
        db_ready: StackInfo, add_stack_node: Callable[[str, str], MqttCredentials], tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    site, node = "hn-secret", f"aq-{time.monotonic_ns() % 10**9}"
    creds = add_stack_node(site, node)
    state = tmp_path / "state"
    password = Path(cloud_config_for_stack(db_ready, state)["influx"]["password_file"]).read_text()
    later = tmp_path / "later" / "writer.password"  # deployed after the processor started
    cloud = start_cloud_for_site(db_ready, state, site, request, {"password_file": str(later)})
    wait_for(lambda: f"cannot read influx.password_file {later}: No such file or directory"
             in cloud.log(), 60, "the missing file logged")
    wait_for(lambda: "ingest subscribed" in cloud.log(), 30, "the ingest to subscribe")
    t0 = (time.time_ns() // 3_600_000_000_000 - 2) * 3_600_000_000_000
    _publish_as_node(creds, _journal_batches(site, node, 0, 10, t0))
    wait_for(lambda: _journaled_data(state / "journal") == 10, 30, "the ingest to journal every message")
    assert cloud.proc is not None
    assert cloud.proc.poll() is None
    assert "starting: journals" not in cloud.log()  # the dataflow waits

    later.parent.mkdir()
    later.write_text(password)
    admin_creds = db_ready.influx("admin")
    with InfluxHTTP(admin_creds.url, admin_creds.username, admin_creds.password()) as admin:
        wait_for(lambda: _raw_pm(admin, node) == list(range(100)), 90, "every reading stored once")
    cloud.stop()
    assert cloud.proc.returncode == 0, cloud.log()


@pytest.mark.stack
def test_a_stop_while_it_waits_for_a_secret_ends_the_run_cleanly(
        db_ready: StackInfo, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    config["influx"]["password_file"] = str(tmp_path / "missing.password")
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    cloud = CloudProcess(path, tmp_path / "cloud.log", ("--no-ingest",))
    request.addfinalizer(cloud.stop)
    cloud.start()
    wait_for(lambda: "cannot read influx.password_file" in cloud.log(), 60, "the missing file logged")
    cloud.stop()
    assert cloud.proc is not None
    assert cloud.proc.returncode == 0, cloud.log()
    assert "stopped on a signal before the dataflow started" in cloud.log()


def _has_open(pid: int, path: Path) -> bool:
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd_dir / fd) == str(path) for fd in os.listdir(fd_dir))
    except OSError:
        return False


@pytest.mark.stack
def test_a_stop_before_the_dataflow_s_own_handlers_ends_the_run_at_once(
        db_ready: StackInfo, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A SIGTERM after the checks and before the dataflow set its handlers (here: while it
    waits for the recovery store's lock, as a cluster's processes starting together on one
    state dir do) used to be noted and forgotten: the dataflow started and ran on until
    systemd's SIGKILL (found by a review)."""
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    lock_path = tmp_path / "state" / "recovery.lock"
    lock = InstanceLock(lock_path, holder="the test").acquire(5)
    request.addfinalizer(lock.release)
    cloud = CloudProcess(path, tmp_path / "cloud.log", ("--no-ingest",))
    request.addfinalizer(cloud.stop)
    cloud.start()
    assert cloud.proc is not None
    pid = cloud.proc.pid
    wait_for(lambda: _has_open(pid, lock_path), 60, "cloud run to wait for the recovery lock")
    os.kill(pid, signal.SIGTERM)
    assert cloud.proc.wait(20) == 0, cloud.log()
    assert "stopped on a signal before the dataflow started" in cloud.log()
    assert "starting: journals" not in cloud.log()


@pytest.mark.stack
def test_an_unreadable_influxdb_ca_file_is_waited_for_like_a_secret(
        db_ready: StackInfo, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    config = cloud_config_for_stack(db_ready, tmp_path / "state")
    missing = tmp_path / "not-yet" / "influx-ca.pem"
    config["influx"] |= {"url": config["influx"]["url"].replace("http://", "https://"),
                         "ca_file": str(missing)}
    path = tmp_path / "cloud.toml"
    path.write_text(to_toml(config))
    cloud = CloudProcess(path, tmp_path / "cloud.log", ("--no-ingest",))
    request.addfinalizer(cloud.stop)
    cloud.start()
    wait_for(lambda: f"cannot read influx.ca_file {missing}: cannot be read: No such file or directory"
             in cloud.log(), 60, "the missing CA file logged")
    assert cloud.proc is not None
    assert cloud.proc.poll() is None  # waiting, not exit 3
    cloud.stop()
    assert cloud.proc.returncode == 0, cloud.log()


@pytest.mark.parametrize(("addresses", "process_id"), [([], 1), (["127.0.0.1:1", "127.0.0.1:2"], 2),
                                                     ([], -1)])
def test_a_process_id_outside_the_cluster_is_a_config_error(
        addresses: list[str], process_id: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before, `--process-id 1` without addresses ended in a Bytewax panic (exit 3, restarted
    by systemd for ever) and `--process-id 2` of two processes waited for ever for peers."""
    path = tmp_path / "cloud.toml"
    flow = {"addresses": addresses, "process_id": 0} if addresses else {}
    path.write_text(to_toml({"mqtt": {"password_file": "m", "ca_file": "c"},
                             "influx": {"password_file": "p"}, "state": {"dir": str(tmp_path / "s")},
                             "flow": flow}))
    assert cloud_main(["run", "--config", str(path), "--process-id", str(process_id)]) == 2
    assert f"--process-id: must be in [0, {max(1, len(addresses))})" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
