"""A cluster must not lose what an ingest on another host journaled: every process shares
state.dir (declared, checked at start), the reader never stands an empty file in for a
missing journal, and a recovery store resumes with fewer processes or ingests than wrote
it (real SQLite journals in a temporary directory)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cloud.cli import prepare_recovery_dir
from cloud.config import MAX_PROCESSES, parse_cloud_config
from cloud.errors import CloudError, JournalError, SinkError
from cloud.flow import InfluxPartition, InfluxSink, JournalSource, RetiredSinkPartition, sink_part
from cloud.journal import Journal, JournalRecord, journal_path
from urbanpulse.errors import ConfigError

BASE = {"mqtt": {"password_file": "p", "ca_file": "c"}, "influx": {"password_file": "p"}}
SECOND = 1_000_000_000


def _cfg(flow: dict[str, object], state: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    return parse_cloud_config({**BASE, "flow": flow, "state": state or {}})


def test_a_cluster_across_hosts_needs_a_declared_shared_state_dir() -> None:
    two_hosts = {"addresses": ["10.0.0.1:2101", "10.0.0.2:2101"], "process_id": 0}
    with pytest.raises(ConfigError, match=r"flow\.addresses.*10\.0\.0\.1:2101.*state\.shared = true"):
        _cfg(two_hosts)
    assert _cfg(two_hosts, {"dir": "/mnt/shared/up", "shared": True}).state_shared
    loopback = _cfg({"addresses": ["127.0.0.1:2101", "localhost:2102"], "process_id": 1})
    assert not loopback.state_shared
    with pytest.raises(ConfigError, match=r"flow\.addresses.*host-b"):
        _cfg({"addresses": ["127.0.0.1:2101", "host-b:2101"], "process_id": 0})
    too_many = [f"127.0.0.1:{2101 + k}" for k in range(MAX_PROCESSES + 1)]
    with pytest.raises(ConfigError, match=rf"flow\.addresses.*at most {MAX_PROCESSES}"):
        _cfg({"addresses": too_many, "process_id": 0})


def test_the_reader_refuses_a_missing_journal_and_creates_nothing(tmp_path: Path) -> None:
    path = journal_path(tmp_path / "journal", "i1")
    with pytest.raises(JournalError, match=r"journal-i1\.sqlite3 does not exist.*share state\.dir"):
        Journal(path, "i1").open(create=False)
    assert not path.exists()
    assert not path.parent.exists()
    Journal(path, "i1").open().close()  # the ingest's side creates it
    reader = Journal(path, "i1").open(create=False)
    assert reader.last_offset() == 0
    reader.close()


def _read(source: JournalSource, resume: dict[str, int] | None) -> list[JournalRecord]:
    part = source.build_part("journal", source.partitions[0], resume)
    out: list[JournalRecord] = []
    for _ in range(100):
        got = part.next_batch()
        out.extend(got)
        if not got:
            break
    part.close()
    return out


def test_journals_of_retired_ingests_are_still_read_after_a_scale_down(tmp_path: Path) -> None:
    t0 = 1_800_000_000 * SECOND
    for k, name in enumerate(("i0", "i1", "i2")):
        journal = Journal(journal_path(tmp_path, name), name).open()
        journal.append([(f"{name}-a", b""), (f"{name}-b", b"")], t0 + k * SECOND)
        journal.close()
    source = JournalSource(tmp_path, ["i0"], retention_s=3600)  # now one ingest is configured
    assert source.list_parts() == ["i0", "i1", "i2"]
    out = _read(source, {"i0": 2, "i1": 1})
    assert [r.topic for r in out] == ["i1-b", "i2-a", "i2-b"]


def test_a_snapshot_naming_a_vanished_journal_stops_the_start(tmp_path: Path) -> None:
    Journal(journal_path(tmp_path, "i0"), "i0").open().close()
    source = JournalSource(tmp_path, ["i0"], retention_s=3600)
    with pytest.raises(JournalError, match=r"journal-i1\.sqlite3 does not exist"):
        source.build_part("journal", "i0", {"i0": 0, "i1": 5})


def test_the_sink_keeps_the_names_of_process_ids_the_cluster_no_longer_has() -> None:
    single = InfluxSink(_cfg({}), process_id=0)
    assert single.list_parts() == [sink_part(k) for k in range(MAX_PROCESSES)]
    second = InfluxSink(_cfg({"addresses": ["127.0.0.1:1", "127.0.0.1:2"], "process_id": 1}), 1)
    assert second.list_parts() == [sink_part(1), *(sink_part(k) for k in range(2, MAX_PROCESSES))]
    # Bytewax indexes the sorted union of every process's names with part_fn.
    union = sorted({*second.list_parts(), sink_part(0)})
    assert [union[second.part_fn(sink_part(k)) % len(union)] for k in range(4)] == \
        [sink_part(k) for k in range(4)]
    retired = single.build_part("influx", sink_part(1), None)
    assert isinstance(retired, RetiredSinkPartition)
    retired.write_batch([[]])
    assert retired.snapshot() is None
    with pytest.raises(SinkError, match="influx-0001"):
        retired.write_batch([[("raw", "m f=1 1")]])


def test_a_process_builds_its_own_partition_as_the_writer(tmp_path: Path) -> None:
    password = tmp_path / "p"
    password.write_text("secret\n")
    cfg = parse_cloud_config({**BASE, "influx": {"password_file": str(password)}})
    part = InfluxSink(cfg, process_id=0).build_part("influx", sink_part(0), None)
    assert isinstance(part, InfluxPartition)
    part.close()


GRACE = """
import threading
from cloud.cli import _exit_unless_set_within
ended = threading.Event()
if {ended}:
    ended.set()
_exit_unless_set_within(ended, 0.1)
print("returned", flush=True)
"""


@pytest.mark.parametrize("ended", [False, True])
def test_a_process_left_waiting_for_its_cluster_after_a_signal_exits_after_the_grace(ended: bool) -> None:
    done = subprocess.run([sys.executable, "-c", GRACE.format(ended=ended)], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0
    if ended:
        assert done.stdout == "returned\n"
    else:
        assert done.stdout == ""
        assert "did not stop within 0.1 s of the signal; exiting" in done.stderr


def test_a_recovery_store_that_is_a_file_is_a_cloud_error_naming_it(tmp_path: Path) -> None:
    rdir = tmp_path / "recovery"
    rdir.write_text("not a directory")
    with pytest.raises(CloudError, match=f"recovery store {rdir} \\(under state.dir\\): Not a directory"):
        prepare_recovery_dir(rdir, 2)


def test_processes_starting_together_create_the_recovery_store_once(tmp_path: Path) -> None:
    # A cluster's processes start at the same moment on one state dir; each one prepares
    # the recovery store. Threads hold separate lock descriptors, as processes would.
    rdir = tmp_path / "recovery"
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            prepare_recovery_dir(rdir, 2)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(p.name for p in rdir.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
