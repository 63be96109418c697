"""`urbanpulse cloud run --config FILE`: the processor's configuration, validated once.

The reference of every key is docs/cloud-config.md.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cloud.logic.domain.door_roles import NO_DOOR_ROLES, ROLES, DoorKey, DoorRoleMap
from urbanpulse.config_fields import (
    finite_seconds,
    http_only_on_loopback,
    only_known,
    plaintext_only_on_loopback,
    read_toml,
    typed,
)
from urbanpulse.errors import ConfigError
from urbanpulse.wire.payload import SENSOR_ID
from urbanpulse.wire.topics import TopicError, validate_id

T = TypeVar("T")


@dataclass(frozen=True)
class CloudMqtt:
    host: str
    port: int
    username: str
    password_file: Path
    ca_file: Path | None
    tls: bool
    client_id: str
    shared_group: str
    node_filter: str
    keepalive_s: int
    # The client certificate and its key (PEM) for a listener that requires one; both or neither.
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def subscriptions(self) -> tuple[str, str, str]:
        """Data, status and site gateways' relays (of their nodes' data and status) only:
        never the cloud's own acks and alerts."""
        return f"{self.node_filter}/data", f"{self.node_filter}/status", f"{self.node_filter}/relay"


@dataclass(frozen=True)
class CloudInflux:
    url: str
    database: str
    username: str
    password_file: Path
    api: str
    batch_lines: int
    token_file: Path | None
    org: str
    reader_username: str
    reader_password_file: Path | None
    timeout_s: float = 30.0  # per HTTP request: an answer that does not come is a failure
    ca_file: Path | None = None  # CAs to check an https server with; None: the system's


@dataclass(frozen=True)
class Retention:
    raw: str
    agg_1m: str
    agg_1h: str


@dataclass(frozen=True)
class FlowSettings:
    workers: int
    process_id: int | None
    addresses: tuple[str, ...]
    epoch_interval_s: float
    backup_interval_s: float
    recovery: bool
    aggregate_horizon_s: int
    journal_retention_s: int
    ingest_instances: int
    ingest_mode: str
    dead_letter_max_bytes: int
    detect: bool
    gc_tuning: bool = True
    drift_pair_suffix: str = "-b"  # `<id><suffix>` is a station's second module of `<id>`
    health_every_s: float = 10.0  # how often each process writes its `processor` point
    replay_interval_s: float = 30.0  # a domain span's replays run at most this often
    door_roles: DoorRoleMap = NO_DOOR_ROLES  # [flow.door_roles]: (site, node, sensor) -> role
    # a stop waits this long at most for its last epoch while it moves on (cloud/stop_grace.py)
    stop_drain_s: float = 120.0
    # how a stop ends the dataflow (STOP_MODES): "abort" leaves the epoch under way to the
    # journal; "drain" writes and commits it, after snapshotting every node held
    stop: str = "abort"
    # closed windows written once to a store beside the recovery store, out of the snapshots
    # (cloud/frozen_store.py); off: frozen into every snapshot, the rows written before read
    frozen_store: bool = True
    # with the frozen store, a node's detectors written whole to it about every this many of
    # its snapshots, which hold the values they took since (cloud/logic/detector_book.py);
    # 0: pickled into every snapshot
    detector_checkpoint_every: int = 20


@dataclass(frozen=True)
class DriftTuning:
    """The drift rules' thresholds (cloud/detect/pair_drift.py, cloud/detect/drift.py)."""

    pair_shift: float = 0.12  # a module pair's ratio this far (relative) from its usual one...
    pair_spread: float = 4.0  # ...and this many times the pair's own spread: out of line
    cross_k: float = 1.0  # the cross-station CUSUM's allowance, in the sensor's scales
    cross_h: float = 8.0  # and its decision threshold
    cross_min_others: int = 3  # stations a sensor is compared with before it is judged


@dataclass(frozen=True)
class CloudConfig:
    mqtt: CloudMqtt
    influx: CloudInflux
    state_dir: Path
    flow: FlowSettings
    retention: Retention
    state_shared: bool = False  # state.dir is on storage every process of the cluster sees
    drift: DriftTuning = DriftTuning()
    # The ingest journals nothing (and takes nothing from the broker) while less is free on
    # state.dir's filesystem: the recovery store there keeps room for its snapshots.
    state_min_free_bytes: int = 1 << 30

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "journal"

    @property
    def recovery_dir(self) -> Path:
        return self.state_dir / "recovery"


DEFAULT_MIN_FREE_BYTES = CloudConfig.state_min_free_bytes

# The broker's listener for the cloud's clients (the nodes have their own, 8883).
CLOUD_MQTT_PORT = 8884
# "process": `cloud run` starts each ingest as a child process (own interpreter, own GIL);
# "thread": inside the dataflow's process (fewer processes, slower under load).
INGEST_MODES = ("process", "thread")
# "abort": a stop leaves the run at once (Bytewax's AbortExecution), the epoch under way not
# committed and read again from the journal at the next start, as after a crash; "drain":
# it ends the input, and Bytewax's last epoch snapshots every node the process holds.
STOP_MODES = ("abort", "drain")
_DURATION = re.compile(r"(INF|\d+[hdw])")
_ZERO_DURATION = re.compile(r"0+[hdw]")
# How far behind the aggregation horizon a rebuild of late data reads raw points: the late
# reading's hour, and the domain replays' lookback before it (the queues' 12 h of tickets,
# the air NowCast's 11 h: cloud.logic.domain_replay.LOOKBACK_NS).
REBUILD_REACH_S = 13 * 3600
_DURATION_S = {"h": 3600, "d": 86400, "w": 7 * 86400}
# The sink keeps a partition name for every process id below this (cloud.flow.InfluxSink),
# so that a recovery store resumes with fewer processes than wrote it.
MAX_PROCESSES = 16


def _table(raw: Mapping[str, Any], key: str, known: set[str]) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a table")
    only_known(value, known, key)
    return value


def _min(value: T, key: str, low: float) -> T:
    if not value >= low:  # type: ignore[operator]  # (also NaN, which TOML reads as a float)
        raise ConfigError(key, f"must be >= {low}, got {value!r}")
    return value


def _opt_path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume another host


def _influx_ca_file(value: str | None, url: str) -> Path | None:
    if value is None:
        return None
    if not value.strip():
        raise ConfigError("influx.ca_file", "is empty: give the CA bundle's path, or leave the key out "
                                            "to trust the system's CAs")
    if not url.startswith("https://"):
        raise ConfigError("influx.ca_file", f"is for an https:// url, but influx.url is {url!r}")
    return Path(value)


def _mqtt_client_cert(cert: str | None, key: str | None, tls: bool
                      ) -> tuple[Path | None, Path | None]:
    """mqtt.cert_file and mqtt.key_file: both or neither, with TLS, not empty."""
    if cert is None and key is None:
        return None, None
    if cert is None or key is None:
        given, missing = ("cert_file", "key_file") if key is None else ("key_file", "cert_file")
        raise ConfigError(f"mqtt.{missing}", f"missing: mqtt.{given} is given (a client "
                                             "certificate needs both, or leave both out)")
    if not tls:
        raise ConfigError("mqtt.cert_file", "is for TLS, but mqtt.tls is false")
    for name, value in (("cert_file", cert), ("key_file", key)):
        if not value.strip():
            raise ConfigError(f"mqtt.{name}", "is empty: give the PEM file's path, or leave "
                                              "both cert_file and key_file out")
    return Path(cert), Path(key)


def _node_filter(value: str) -> str:
    parts = value.split("/")
    if len(parts) != 4 or parts[:2] != ["urbanpulse", "v1"] or "#" in value:
        raise ConfigError("mqtt.node_filter", f"{value!r}: use urbanpulse/v1/<site or +>/<node or +>")
    return value


def load_cloud_config(path: Path) -> CloudConfig:
    return parse_cloud_config(read_toml(path))


def parse_cloud_config(raw: Mapping[str, Any]) -> CloudConfig:
    for k in raw:
        if k not in ("mqtt", "influx", "state", "flow", "retention", "drift"):
            raise ConfigError(k, "unknown table (known: drift, flow, influx, mqtt, retention, state)")
    m = _table(raw, "mqtt", {"host", "port", "username", "password_file", "ca_file", "tls",
                             "client_id", "shared_group", "node_filter", "keepalive_s",
                             "cert_file", "key_file"})
    tls = typed(m, "tls", "mqtt", bool, True)
    ca = typed(m, "ca_file", "mqtt", str, None)
    if tls and ca is None:
        raise ConfigError("mqtt.ca_file", "missing: TLS is on")
    group = typed(m, "shared_group", "mqtt", str, "urbanpulse")
    if group and not re.fullmatch(r"[A-Za-z0-9_-]+", group):
        raise ConfigError("mqtt.shared_group", f"{group!r}: use letters, digits, '_' and '-'")
    client_id = typed(m, "client_id", "mqtt", str, "urbanpulse-ingest")
    # No '.': a node's client id is its user name "<site>.<node>" (the broker forces it),
    # so no cloud client can ever resume or kick a node's session.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", client_id):
        raise ConfigError("mqtt.client_id", f"{client_id!r}: use 1-64 letters, digits, '_' and "
                          "'-' (no '.', which the nodes' ids have)")
    cert_file, key_file = _mqtt_client_cert(typed(m, "cert_file", "mqtt", str, None),
                                            typed(m, "key_file", "mqtt", str, None), tls)
    mqtt = CloudMqtt(
        host=typed(m, "host", "mqtt", str, "127.0.0.1"),
        port=_min(typed(m, "port", "mqtt", int, CLOUD_MQTT_PORT), "mqtt.port", 1),
        username=typed(m, "username", "mqtt", str, "cloud"),
        password_file=Path(typed(m, "password_file", "mqtt", str)),
        ca_file=Path(ca) if ca else None,
        tls=tls,
        client_id=client_id,
        shared_group=group,
        node_filter=_node_filter(typed(m, "node_filter", "mqtt", str, "urbanpulse/v1/+/+")),
        keepalive_s=_min(typed(m, "keepalive_s", "mqtt", int, 30), "mqtt.keepalive_s", 5),
        cert_file=cert_file,
        key_file=key_file,
    )
    plaintext_only_on_loopback(mqtt.tls, mqtt.host, "mqtt.tls")
    i = _table(raw, "influx", {"url", "database", "username", "password_file", "api",
                               "batch_lines", "token_file", "org", "reader_username",
                               "reader_password_file", "timeout_s", "ca_file"})
    api = typed(i, "api", "influx", str, "v1")
    if api not in ("v1", "v2"):
        raise ConfigError("influx.api", f"must be 'v1' or 'v2', got {api!r}")
    url = typed(i, "url", "influx", str, "http://127.0.0.1:8086")
    if not re.match(r"https?://", url):
        raise ConfigError("influx.url", f"must start with http:// or https://, got {url!r}")
    http_only_on_loopback(url, "influx.url")
    ca_file = _influx_ca_file(typed(i, "ca_file", "influx", str, None), url)
    token = typed(i, "token_file", "influx", str, None)
    if api == "v2" and token is None:
        raise ConfigError("influx.token_file", "required with api = 'v2'")
    influx = CloudInflux(
        url=url.rstrip("/"),
        database=typed(i, "database", "influx", str, "urbanpulse"),
        username=typed(i, "username", "influx", str, "writer"),
        password_file=Path(typed(i, "password_file", "influx", str, "" if api == "v2" else ...)),
        api=api,
        batch_lines=_min(typed(i, "batch_lines", "influx", int, 5000), "influx.batch_lines", 1),
        token_file=Path(token) if token else None,
        org=typed(i, "org", "influx", str, "urbanpulse"),
        reader_username=typed(i, "reader_username", "influx", str, "reader"),
        reader_password_file=_opt_path(typed(i, "reader_password_file", "influx", str, None)),
        timeout_s=finite_seconds(_min(typed(i, "timeout_s", "influx", float, 30.0), "influx.timeout_s", 0.5),
                                 "influx.timeout_s"),
        ca_file=ca_file,
    )
    s = _table(raw, "state", {"dir", "shared", "min_free_bytes"})
    shared = typed(s, "shared", "state", bool, False)
    min_free = _min(typed(s, "min_free_bytes", "state", int, DEFAULT_MIN_FREE_BYTES),
                    "state.min_free_bytes", 0)
    f = _table(raw, "flow", {"workers", "process_id", "addresses", "epoch_interval_s",
                             "backup_interval_s", "recovery", "aggregate_horizon_s",
                             "journal_retention_s", "ingest_instances", "ingest_mode",
                             "dead_letter_max_bytes", "detect", "gc_tuning",
                             "drift_pair_suffix", "health_every_s", "replay_interval_s",
                             "door_roles", "stop_drain_s", "stop", "frozen_store",
                             "detector_checkpoint_every"})
    pair_suffix = typed(f, "drift_pair_suffix", "flow", str, "-b")
    if not re.fullmatch(r"[a-z0-9-]{1,16}", pair_suffix):
        raise ConfigError("flow.drift_pair_suffix", "must be 1-16 characters of a-z, 0-9 and '-' "
                          f"(what a sensor id may hold), got {pair_suffix!r}")
    addresses = typed(f, "addresses", "flow", list, [])
    if not all(isinstance(a, str) and re.fullmatch(r"[^:\s]+:\d+", a) for a in addresses):
        raise ConfigError("flow.addresses", "must be a list of 'host:port' strings")
    twice = next((a for k, a in enumerate(addresses) if a in addresses[:k]), None)
    if twice is not None:
        raise ConfigError("flow.addresses", f"{twice} is listed twice: each process of the cluster "
                          "listens on its own host:port")
    pid = typed(f, "process_id", "flow", int, None)
    ingest_mode = typed(f, "ingest_mode", "flow", str, "process")
    if ingest_mode not in INGEST_MODES:
        raise ConfigError("flow.ingest_mode",
                          f"must be one of {', '.join(INGEST_MODES)}, got {ingest_mode!r}")
    stop = typed(f, "stop", "flow", str, "abort")
    if stop not in STOP_MODES:
        raise ConfigError("flow.stop", f"must be one of {', '.join(STOP_MODES)}, got {stop!r}")
    if addresses and (pid is None or not 0 <= pid < len(addresses)):
        raise ConfigError("flow.process_id", f"must be in [0, {len(addresses)}) with addresses set")
    if not addresses and pid not in (None, 0):
        # `cloud run` deals the ingests out by process id: another would start none
        raise ConfigError("flow.process_id", "must be 0 (or left out) without flow.addresses, "
                          f"got {pid}: a processor alone is process 0")
    if len(addresses) > MAX_PROCESSES:
        raise ConfigError("flow.addresses", f"at most {MAX_PROCESSES} processes, got {len(addresses)}")
    remote = [a for a in addresses if not _loopback(a.rsplit(":", 1)[0])]
    if remote and not shared:
        raise ConfigError("flow.addresses",
                          f"{remote[0]} is another host: every process of a cluster reads the same "
                          "journals and recovery store, so state.dir must be shared storage that "
                          "all hosts mount (declare it with state.shared = true)")
    flow = FlowSettings(
        workers=_min(typed(f, "workers", "flow", int, 1), "flow.workers", 1),
        process_id=pid,
        addresses=tuple(addresses),
        epoch_interval_s=_min(typed(f, "epoch_interval_s", "flow", float, 2.0), "flow.epoch_interval_s",
                              0.05),
        backup_interval_s=_min(typed(f, "backup_interval_s", "flow", float, 0.0),
                               "flow.backup_interval_s", 0),
        recovery=typed(f, "recovery", "flow", bool, True),
        aggregate_horizon_s=_min(typed(f, "aggregate_horizon_s", "flow", int, 6 * 3600),
                                 "flow.aggregate_horizon_s", 120),
        journal_retention_s=_min(typed(f, "journal_retention_s", "flow", int, 86400),
                                 "flow.journal_retention_s", 60),
        ingest_instances=_min(typed(f, "ingest_instances", "flow", int, 1), "flow.ingest_instances", 1),
        ingest_mode=ingest_mode,
        dead_letter_max_bytes=_min(typed(f, "dead_letter_max_bytes", "flow", int, 4096),
                                   "flow.dead_letter_max_bytes", 64),
        detect=typed(f, "detect", "flow", bool, True),
        gc_tuning=typed(f, "gc_tuning", "flow", bool, True),
        drift_pair_suffix=pair_suffix,
        health_every_s=_health_every(typed(f, "health_every_s", "flow", float, 10.0)),
        replay_interval_s=finite_seconds(
            _min(typed(f, "replay_interval_s", "flow", float, 30.0), "flow.replay_interval_s", 0),
            "flow.replay_interval_s"),
        door_roles=_door_roles(f.get("door_roles", {})),
        stop_drain_s=finite_seconds(
            _min(typed(f, "stop_drain_s", "flow", float, 120.0), "flow.stop_drain_s", 1.0),
            "flow.stop_drain_s"),
        stop=stop,
        frozen_store=typed(f, "frozen_store", "flow", bool, True),
        detector_checkpoint_every=_min(typed(f, "detector_checkpoint_every", "flow", int, 20),
                                       "flow.detector_checkpoint_every", 0),
    )
    if flow.backup_interval_s > flow.journal_retention_s:
        raise ConfigError("flow.journal_retention_s",
                          f"{flow.journal_retention_s} is shorter than flow.backup_interval_s "
                          f"({flow.backup_interval_s:g}): a recovery store restored from a backup "
                          "resumes at journal records already deleted (keep the journal at least "
                          "as long as the backups reach back)")
    r = _table(raw, "retention", {"raw", "agg_1m", "agg_1h"})
    durations = {}
    for key, default in (("raw", "30d"), ("agg_1m", "400d"), ("agg_1h", "INF")):
        value = typed(r, key, "retention", str, default)
        if not _DURATION.fullmatch(value):
            raise ConfigError(f"retention.{key}", f"{value!r}: use INF or a number with h, d or w")
        refuse_zero_retention(key, value)
        durations[key] = value
    _raw_covers_rebuilds(durations["raw"], flow.aggregate_horizon_s)
    return CloudConfig(mqtt, influx, Path(typed(s, "dir", "state", str, ".urbanpulse/cloud")), flow,
                       Retention(**durations), shared, _drift(raw), min_free)


def refuse_zero_retention(policy: str, duration: str) -> None:
    """InfluxDB takes a DURATION of 0 for INF: a raw policy meant to keep nothing would keep
    everything. ConfigError naming `retention.<policy>`."""
    if _ZERO_DURATION.fullmatch(duration):
        raise ConfigError(f"retention.{policy}", f"{duration!r} is zero, which InfluxDB takes for "
                          "INF (kept for ever): write INF if that is meant, else at least 1h")


def _raw_covers_rebuilds(raw: str, horizon_s: int) -> None:
    """Late data older than the horizon is folded in by rebuilding its windows and domain
    rollups from the raw points: a raw policy that no longer holds what they read makes
    them overwrite the right aggregates with partial ones."""
    if raw == "INF":
        return
    need_s = horizon_s + REBUILD_REACH_S
    if int(raw[:-1]) * _DURATION_S[raw[-1]] < need_s:
        raise ConfigError("retention.raw", f"{raw!r} keeps less than flow.aggregate_horizon_s "
                          f"({horizon_s} s) plus 13 h: late data older than the horizon is folded "
                          "in by rebuilding its windows and domain rollups from the raw points, "
                          "reading up to 13 h before its hour, which InfluxDB would have deleted "
                          "(the rebuilt aggregates would overwrite the right ones with partial "
                          f"figures). Keep raw at least {-(-need_s // 3600)}h, or lower "
                          "flow.aggregate_horizon_s")


def _door_roles(table: Any) -> DoorRoleMap:
    """[flow.door_roles]: "site/node/sensor" = "er" | "visit" | "ignore" (a sensor id is
    unique within its node only). Each key and role checked, the error naming the key."""
    if not isinstance(table, dict):
        raise ConfigError("flow.door_roles", 'must be a table of "site/node/sensor" = "er", '
                          f'"visit" or "ignore" ([flow.door_roles]), got {table!r}')
    roles: dict[DoorKey, str] = {}
    for key, role in table.items():
        full = f"flow.door_roles.{key}"
        parts = key.split("/")
        if len(parts) != 3:
            raise ConfigError(full, 'must be "site/node/sensor" (the door counter\'s site, node '
                                    f"and sensor ids, two '/'), got {len(parts) - 1} '/'")
        site, node, sensor = parts
        try:
            validate_id("site", site)
            validate_id("node", node)
        except TopicError as exc:
            raise ConfigError(full, str(exc)) from exc
        if not SENSOR_ID.fullmatch(sensor):
            raise ConfigError(full, f"sensor {sensor!r} is not a valid id: use 1-64 characters of "
                                    "a-z, 0-9, '_', '.' and '-', starting with a letter or digit")
        if not isinstance(role, str) or role not in ROLES:
            raise ConfigError(full, f"must be one of {', '.join(ROLES)}, got {role!r}")
        roles[(site, node, sensor)] = role
    return DoorRoleMap(roles)


# "Processor silent" fires after 5 minutes without a point: an interval must fit it often.
HEALTH_EVERY_RANGE_S = (1.0, 60.0)


def _health_every(value: float) -> float:
    low, high = HEALTH_EVERY_RANGE_S
    if not low <= finite_seconds(value, "flow.health_every_s") <= high:
        raise ConfigError("flow.health_every_s", f"must be in [{low:g}, {high:g}] seconds, got {value!r}")
    return value


def _drift(raw: Mapping[str, Any]) -> DriftTuning:
    d = _table(raw, "drift", {"pair_shift", "pair_spread", "cross_k", "cross_h", "cross_min_others"})
    default = DriftTuning()

    def number(key: str, low: float, high: float, kind: type = float) -> Any:
        value: float = typed(d, key, "drift", kind, getattr(default, key))
        if not low <= value <= high:
            raise ConfigError(f"drift.{key}", f"must be in [{low:g}, {high:g}], got {value!r}")
        return value

    return DriftTuning(
        pair_shift=number("pair_shift", 0.01, 1.0),
        pair_spread=number("pair_spread", 0.0, 20.0),
        cross_k=number("cross_k", 0.0, 10.0),
        cross_h=number("cross_h", 0.5, 100.0),
        cross_min_others=number("cross_min_others", 1, 100, int),
    )
