"""The recovery store is made whole or not at all. Bytewax's init_db_dir makes one SQLite
file per partition; on a disk that fills up midway it panics with the first file made and
the next missing, and `cloud run` took that directory, not empty, for a store at every
start after: Bytewax refused it ("Missing recovery partitions"), and the processor failed
at each start for ever, after the disk had room again (found by review). The state disk
here is a real 1 MiB tmpfs (mounting needs root: skipped otherwise)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from cloud.cli import prepare_recovery_dir
from cloud.errors import CloudError
from tests.disks import fill, small_disk

ROOM_FOR_ONE_PARTITION = 44 * 1024  # one is 32 KiB, with SQLite's journal on the way


def test_a_store_the_full_disk_cut_midway_is_made_again_once_there_is_room(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk:
        rdir = disk / "state" / "recovery"
        filler = fill(disk, ROOM_FOR_ONE_PARTITION)
        with pytest.raises(CloudError, match=r"recovery store .*recovery \(under state.dir\).*"
                                             r"database or disk is full"):
            prepare_recovery_dir(rdir, 2)
        assert not rdir.exists() or not any(rdir.iterdir())  # no part of a store left as one
        filler.unlink()  # room again

        prepare_recovery_dir(rdir, 2)
        assert sorted(p.name for p in rdir.glob("part-*.sqlite3")) == ["part-0.sqlite3",
                                                                       "part-1.sqlite3"]
        assert [p.name for p in rdir.parent.iterdir() if p.name != rdir.name
                and not p.name.endswith(".lock")] == []
        flow = Dataflow("probe")
        out: list[int] = []
        op.output("out", op.input("in", flow, TestingSource([1, 2])), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(seconds=1), recovery_config=RecoveryConfig(str(rdir)))
        assert out == [1, 2]
