"""The domain-state benchmark on the real node step and simulated city: a short stream of a
cabinet, its closed windows held compact (in memory about their pickled size, where they
took about ten times it held open), its per-message timing run live and with a backlog,
the collector given back, and bad input refused."""

from __future__ import annotations

import gc

import pytest

from bench.pipeline.domain_state_size import main, messages, rollup_parts
from bench.pipeline.errors import PipelineBenchError
from bench.pipeline.node_state_size import measure, node_stream


def test_a_cabinet_s_closed_windows_are_held_about_their_pickled_size() -> None:
    _, state = measure("cau-giay/cabinet", 2.5, detect=False)
    parts = rollup_parts(state.domain)
    assert {"traffic", "traffic.windows", "domain"} <= set(parts)
    assert "air" not in parts  # no air readings: nothing reported
    pickled, memory = parts["traffic.windows"]
    assert pickled > 0
    assert memory < 3 * pickled  # closed hours as bytes; open, about 7 times their pickle
    hours = state.domain.traffic.windows[("agg_1h", 3600 * 10**9)]
    assert sum(isinstance(w, bytes) for w in hours.values()) == len(hours) - 1


def test_messages_are_the_readings_of_a_second() -> None:
    readings = node_stream("cau-giay/cabinet", 0.2)
    msgs = messages(readings)
    assert sum(len(m) for m in msgs) == len(readings)
    assert all(m[-1].ts_ns - m[0].ts_ns < 10**9 for m in msgs)


def test_main_reports_sizes_and_times(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--hours", "1.5", "--nodes", "cau-giay/cabinet", "--rounds", "2",
          "--process-rounds", "1", "--late-hours", "0.25"])
    out = capsys.readouterr().out
    assert "cau-giay/cabinet at 1.5 h" in out
    assert "traffic.windows" in out
    assert "µs a message" in out
    assert "0.25 h sent last" in out
    assert gc.isenabled()


def test_bad_input_is_refused() -> None:
    with pytest.raises(PipelineBenchError, match="--hours"):
        main(["--hours", "0"])
