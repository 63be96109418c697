"""A batch the broker refuses (a PUBACK with a failure reason code: here the real
Mosquitto's "Not authorized", its ACL no longer letting the node write) is sent again on
the resend backoff, counted and logged once per episode; once the broker takes batches
again, the refused ones go at once. Before, a refused batch's readings were picked up
again only by the backlog pass, once older than live_window_s (about a minute after the
ACL was mended); here live_window_s is an hour of the FakeClock, which never gets there.

The node's ACL entry is taken out of the session broker's ACL file and the broker told to
reread it (SIGHUP), then the file is written again from the credentials, as
`urbanpulse stack add-node` writes it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge import publisher as publisher_module
from edge.config import load_config
from edge.drivers.base import Sample
from edge.mqtt_client import make_client as make_node_client
from edge.outbox import Outbox
from edge.publisher import RESEND_JITTER, Publisher
from tests.conftest import Collector
from urbanpulse.clock import FakeClock, to_epoch_ns
from urbanpulse.stack import StackConfig, mosquitto
from urbanpulse.stack.config import CLOUD_USER
from urbanpulse.stack.layout import Layout
from urbanpulse.testing import wait_for

SITE = "hn-refused"
NODE = "aq-refused"
T = 10.0  # ack_timeout_s, in FakeClock seconds
STEP = T / 4
READINGS = 5


@pytest.fixture(autouse=True)
def _quick_pumps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The publisher looks at the outbox and the FakeClock every 10 ms, not 100 ms: each clock
    step here waits for a look. Only how soon it looks after a step changes; what it does at
    each look is driven by the FakeClock alone."""
    monkeypatch.setattr(publisher_module, "PUMP_INTERVAL_S", 0.01)


@contextlib.contextmanager
def node_not_allowed_to_write(stack_config: StackConfig) -> Iterator[Callable[[], None]]:
    """The broker's ACL without the node's entry until the yielded `mend()` (or the end)."""
    layout = Layout(stack_config.home)
    users = [u for u in layout.mqtt_password_files() if u not in (CLOUD_USER, f"{SITE}.{NODE}")]
    layout.mosquitto_acl.write_text(mosquitto.render_acl(users), encoding="utf-8")
    mosquitto.reload(stack_config, layout, CLOUD_USER)
    mended = False

    def mend() -> None:
        nonlocal mended
        mosquitto.write_auth_files(layout)
        mosquitto.reload(stack_config, layout, CLOUD_USER)
        mended = True

    try:
        yield mend
    finally:
        if not mended:
            mend()


def test_refused_batches_are_sent_again_on_the_backoff_and_at_once_when_taken_again(
        make_node_config: Callable[..., Path], stack_config: StackConfig,
        collector: Callable[[str, str], Collector], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    watch = collector(SITE, NODE)
    path = make_node_config(SITE, NODE, '[[sensors]]\nid = "pm-1"\ndriver = "sds011"\n'
                            'port = "/dev/null"\n', delivery="broker", ack_timeout_s=T,
                            live_window_s=3600.0)
    config = load_config(path)
    clock = FakeClock(datetime(2026, 11, 29, 6, 0, tzinfo=UTC))
    outbox = Outbox(tmp_path / "outbox.sqlite3").open()
    publisher = Publisher(config, outbox, lambda: make_node_client(f"edge-{SITE}.{NODE}",
                                                                   config.mqtt),
                          clock, lambda: {})
    state = publisher.state

    def append(n: int) -> None:
        outbox.append([Sample("pm-1", "air.pm", {"pm25": 12.0, "pm10": 20.0}, clock.now())
                       for _ in range(n)], to_epoch_ns(clock.now()))

    def step(by: float) -> None:
        """The clock moved on `by`; wait until the publisher has looked and its batches
        are answered."""
        clock.advance(by)
        now = clock.monotonic()
        wait_for(lambda: (state.pumped_at or 0) >= now and state.inflight == 0, 10,
                 f"the publisher to settle at {now}", every_s=0.01)

    with caplog.at_level(logging.INFO, logger="urbanpulse.edge.publisher"), \
            node_not_allowed_to_write(stack_config) as mend:
        publisher.start()
        try:
            wait_for(lambda: state.connected, 15, "the publisher to connect")
            append(READINGS)
            step(1.0)
            first_refusal = clock.monotonic()
            append(READINGS)
            step(1.0)
            assert (state.rejected, state.refused) == (2, 2), state
            assert state.last_refusal == "Not authorized"
            assert state.resend_wait_s == T

            # Refused again at each resend, at T and then about 2 x T after: the backoff.
            resends: list[float] = []
            while len(resends) < 2:
                rejected = state.rejected
                step(STEP)
                if state.rejected > rejected:
                    resends.append(clock.monotonic())
                assert clock.monotonic() < first_refusal + 5 * T, state
            assert T <= resends[0] - first_refusal < T + STEP
            assert 2 * T * RESEND_JITTER[0] <= resends[1] - resends[0] < 2 * T + STEP
            assert state.refused == 1  # the two went again as one batch, due at one step
            assert state.resend_wait_s is not None
            assert state.resend_wait_s > T  # what `edge status` shows
            assert outbox.stats().depth == 2 * READINGS
            assert watch.seqs("pm-1") == []

            # Mended; a new reading's batch is taken, and the refused ones go with it
            # at once, not after their waits (up to 4 x T now).
            mend()
            append(1)
            step(1.0)
            wait_for(lambda: outbox.stats().depth == 0, 10, f"every reading taken ({state})")
            assert state.refused == 0
            assert state.resend_wait_s is None
            wait_for(lambda: watch.seqs("pm-1") == list(range(2 * READINGS + 1)), 10,
                     "every reading at the subscriber, once")
        finally:
            publisher.stop()
            outbox.close()
    assert publisher.failure is None
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    # One episode of refusals: logged when it began (with the reason) and when it ended.
    assert messages == ["the broker refuses batches; sending them again on the resend backoff",
                        "the broker takes batches again"], messages
    refusal = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert refusal.__dict__["reason"] == "Not authorized"
    assert refusal.__dict__["reason_code"] == 0x87


def test_a_refused_connection_keeps_the_brokers_reason(
        make_node_config: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong password: the broker's refusal ("Not authorized") is what `edge status` and
    the heartbeat show, not the close that follows it ("Protocol error"), which overwrote
    it (found by the docs walk)."""
    path = make_node_config(SITE, "aq-wrong-password", '[[sensors]]\nid = "pm-1"\n'
                            'driver = "sds011"\nport = "/dev/null"\n')
    config = load_config(path)
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    path.write_text(path.read_text().replace(str(config.mqtt.password_file), str(wrong)))
    config = load_config(path)
    outbox = Outbox(tmp_path / "wrong.sqlite3").open()
    publisher = Publisher(config, outbox, lambda: make_node_client(
        f"edge-{SITE}.aq-wrong-password", config.mqtt), FakeClock(datetime(2026, 5, 1, tzinfo=UTC)),
        lambda: {})
    publisher.start()
    try:
        wait_for(lambda: publisher.state.failed_connects >= 1, 15, "a refused connection")
        assert publisher.state.last_error == "broker refused the connection: Not authorized"
        assert not publisher.state.connected
        # the log line says whom the broker refused, and which broker
        refused = next(r for r in caplog.records if r.getMessage() == "mqtt connection refused")
        assert refused.__dict__["username"] == f"{SITE}.aq-wrong-password"
        assert refused.__dict__["broker"] == f"{config.mqtt.host}:{config.mqtt.port}"
    finally:
        publisher.stop()
        outbox.close()
    assert publisher.failure is None
