"""One ingest per instance at a time: an exclusive flock next to the journal, held for the
ingest's life (real flocks, real child processes); and `cloud run`'s ingest child is never
started once its stop has begun."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloud.config import parse_cloud_config
from cloud.errors import CloudError
from cloud.ingest import Ingest, IngestProcess, InstanceLock, instance_lock_path
from cloud.journal import Journal, journal_path
from urbanpulse.testing import wait_for

HOLDER = """
import sys
from pathlib import Path
from cloud.ingest import InstanceLock
InstanceLock(Path(sys.argv[1])).acquire(5)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_holder_waits_bounded_and_gets_the_lock_once_the_first_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "ingest-i0.lock"
    first = InstanceLock(path).acquire(1)
    with pytest.raises(CloudError, match=r"still holds .*ingest-i0\.lock after 0\.2 s"):
        InstanceLock(path).acquire(0.2)
    first.release()
    InstanceLock(path).acquire(1).release()


def test_the_lock_of_another_process_is_released_when_that_process_ends(tmp_path: Path) -> None:
    path = tmp_path / "ingest-i0.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CloudError, match="still holds"):
            InstanceLock(path).acquire(0.2)
        assert holder.stdin is not None
        holder.stdin.close()  # the holder ends; the kernel drops its flock
        InstanceLock(path).acquire(10).release()
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def _mqtt_cfg(tmp_path: Path):  # type: ignore[no-untyped-def]
    password = tmp_path / "password"
    password.write_text("secret\n")
    return parse_cloud_config({"mqtt": {"password_file": str(password), "tls": False, "port": 1},
                               "influx": {"password_file": "p"}}).mqtt


def test_an_ingest_does_not_connect_while_another_of_its_instance_runs(tmp_path: Path) -> None:
    journal = Journal(journal_path(tmp_path, "i0"), "i0").open()
    held = InstanceLock(instance_lock_path(journal, "i0")).acquire(1)
    ingest = Ingest(_mqtt_cfg(tmp_path), journal, instance="i0")
    with pytest.raises(CloudError, match="still holds"):
        ingest.start(lock_wait_s=0.2)
    assert ingest._thread is None  # no commit thread, no MQTT loop: it never started
    held.release()
    journal.close()


def _process_config(tmp_path: Path) -> Path:
    # No such password file: the child ingest exits at once with a runtime error.
    path = tmp_path / "cloud.toml"
    path.write_text(f'[mqtt]\ntls = false\npassword_file = "{tmp_path / "missing"}"\n'
                    f'[influx]\npassword_file = "p"\n[state]\ndir = "{tmp_path / "state"}"\n')
    return path


def test_no_child_is_started_once_stop_has_begun(tmp_path: Path) -> None:
    child = IngestProcess(_process_config(tmp_path), "i0")
    child.stop()
    assert child.start() is False
    assert child.proc is None


@pytest.mark.slow
def test_a_restart_closes_the_old_pipe_and_stop_ends_the_watch(tmp_path: Path) -> None:
    child = IngestProcess(_process_config(tmp_path), "i0")
    child.restart_min_s = 0.05
    assert child.start()
    first = child.proc
    assert first is not None
    wait_for(lambda: child.proc is not first or None, 30, "the exited child to be restarted")
    assert first.stdin is not None
    assert first.stdin.closed
    child.stop()
    assert child._watch is not None
    assert not child._watch.is_alive()
    last = child.proc
    assert last is not None
    assert last.poll() is not None
    assert child.start() is False
