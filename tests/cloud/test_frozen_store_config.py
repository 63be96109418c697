"""`flow.frozen_store`: on by default, a boolean or refused by name at start-up; the store
the dataflow gets sits in the recovery store's directory and keeps a row let go for
flow.backup_interval_s and a margin of at least 10 epochs; `flow.detector_checkpoint_every`
reaches it, a count of snapshots refused below 0 by name."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.config import parse_cloud_config
from cloud.flow import FROZEN_GC_MARGIN_S, frozen_store
from urbanpulse.errors import ConfigError


def _config(**flow: Any) -> Any:
    return parse_cloud_config({"mqtt": {"password_file": "p", "tls": False},
                               "influx": {"password_file": "p"}, "flow": flow})


def test_the_frozen_store_is_on_unless_switched_off() -> None:
    assert _config().flow.frozen_store is True
    assert _config(frozen_store=False).flow.frozen_store is False
    for bad in ("yes", 1, "false"):
        with pytest.raises(ConfigError, match=r"flow\.frozen_store"):
            _config(frozen_store=bad)


def test_the_store_sits_beside_the_recovery_partitions_and_waits_out_the_backups() -> None:
    cfg = _config(backup_interval_s=600, epoch_interval_s=2.0)
    store = frozen_store(cfg, 3)
    assert store.directory == cfg.recovery_dir
    assert store.part == 3
    assert store.gc_delay_ns == int((600 + FROZEN_GC_MARGIN_S) * 1e9)
    slow = frozen_store(_config(epoch_interval_s=60.0, frozen_store=False), 0)
    assert slow.gc_delay_ns == int(600 * 1e9)  # 10 epochs of a minute
    assert slow.writes is False


def test_the_detectors_checkpoint_every_20_snapshots_unless_set_or_without_the_store() -> None:
    assert _config().flow.detector_checkpoint_every == 20
    assert frozen_store(_config(), 0).detector_every == 20
    assert frozen_store(_config(detector_checkpoint_every=5), 0).detector_every == 5
    assert frozen_store(_config(detector_checkpoint_every=0), 0).detector_every == 0
    # with the store off the detectors stay in the snapshots: nothing is written there
    assert frozen_store(_config(frozen_store=False), 0).detector_every == 0
    with pytest.raises(ConfigError, match=r"flow\.detector_checkpoint_every.*>= 0"):
        _config(detector_checkpoint_every=-1)
    with pytest.raises(ConfigError, match=r"flow\.detector_checkpoint_every"):
        _config(detector_checkpoint_every=2.5)
