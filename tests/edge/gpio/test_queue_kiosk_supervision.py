"""The kiosk's supervision lines on explicit timestamps: what the heartbeat reports."""

import pytest

from edge.drivers.queue_kiosk.supervision import CABLE, READY, KioskSupervision


def _both(t0: float = 0.0, cable_whole: bool = True, ready: bool = True) -> KioskSupervision:
    return KioskSupervision(lines=(CABLE, READY), levels=(cable_whole, ready), t0=t0,
                            bounce_s=0.03, delay_s=1.0, whole_level=True)


def test_a_cut_counts_once_it_has_lasted_the_delay_and_ends_at_once() -> None:
    s = _both()
    assert s.report(5.0) == {"cable": "ok", "ready": True}
    s.feed(CABLE, False, 10.0)  # the loop opens
    s.poll(10.05)
    assert s.level(CABLE) is False
    assert s.report(10.9) == {"cable": "ok", "ready": True}, "not yet: a wiggled connector"
    assert s.report(11.0)["cable"] == "cut"
    s.feed(CABLE, True, 20.0)
    s.poll(20.05)
    assert s.report(20.05)["cable"] == "ok"


def test_a_bounce_shorter_than_the_debounce_changes_nothing() -> None:
    s = _both()
    s.feed(CABLE, False, 10.0)
    s.feed(CABLE, True, 10.01)
    s.poll(12.0)
    assert s.level(CABLE) is True
    assert s.report(12.0)["cable"] == "ok"


def test_a_kiosk_out_of_service_is_not_ready_after_the_delay() -> None:
    s = _both()
    s.feed(READY, False, 100.0)
    assert s.next_deadline() == pytest.approx(100.03)
    s.poll(100.03)
    assert s.report(100.5)["ready"] is True
    assert s.report(101.0)["ready"] is False
    s.feed(READY, True, 200.0)
    s.poll(200.03)
    assert s.report(200.03)["ready"] is True


def test_states_at_start_up_count_from_start_up() -> None:
    s = _both(t0=50.0, cable_whole=False, ready=False)
    assert s.report(50.5) == {"cable": "ok", "ready": True}
    assert s.report(51.0) == {"cable": "cut", "ready": False}


def test_only_the_lines_wired_are_reported() -> None:
    ready_only = KioskSupervision(lines=(READY,), levels=(True,), t0=0, bounce_s=0, delay_s=0)
    assert ready_only.report(1.0) == {"ready": True}
    low_whole = KioskSupervision(lines=(CABLE,), levels=(False,), t0=0, bounce_s=0, delay_s=0,
                                 whole_level=False)
    assert low_whole.report(1.0) == {"cable": "ok"}
    with pytest.raises(ValueError, match="distinct"):
        KioskSupervision(lines=(READY, READY), levels=(True, True), t0=0, bounce_s=0, delay_s=0)
