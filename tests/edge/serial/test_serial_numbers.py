"""The serial drivers' durations must be finite: an infinite silence timeout never fails a
silent sensor, a warm-up of nan never flags one (both passed the check, which compared
only; found by the SDS011 warm-up work). Each is refused naming its key."""

from __future__ import annotations

import pytest

from edge.drivers.mhz19b.driver import parse_params as mhz19b
from edge.drivers.pms5003.driver import parse_params as pms5003
from edge.drivers.sds011.driver import parse_params as sds011
from urbanpulse.errors import ConfigError


@pytest.mark.parametrize("parse", [sds011, pms5003, mhz19b], ids=["sds011", "pms5003", "mhz19b"])
@pytest.mark.parametrize("name", ["silence_timeout_s", "warmup_s"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_duration_that_is_not_finite_is_refused_naming_its_key(parse, name: str,  # type: ignore[no-untyped-def]
                                                                  value: float) -> None:
    with pytest.raises(ConfigError, match=rf"^s1\.{name}: must be a finite number"):
        parse({"port": "/dev/null", name: value}, "s1")
