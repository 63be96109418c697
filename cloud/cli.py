"""`urbanpulse cloud`: run the processor, or its parts; create the database layout."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cloud.config import CloudConfig, CloudInflux, load_cloud_config
from cloud.errors import CloudError, InfluxAccessError
from cloud.stop_grace import STALL_S, DrainEnd, EpochProgress, wait_for_last_epoch
from urbanpulse.cli_types import add_config_argument, aware_datetime, config_of
from urbanpulse.errors import ConfigError, UrbanpulseError
from urbanpulse.wire import validate_id

if TYPE_CHECKING:
    from cloud.flow import AbortStop
    from cloud.ingest import Ingest, IngestProcess
    from cloud.sink import InfluxWriter
    from cloud.stop_signals import StopSignals

EXIT_CONFIG = 2
EXIT_RUNTIME = 3
SHUTDOWN_GRACE_S = 5.0
# A stop first ends the journal source: by AbortExecution (flow.stop = "abort", Bytewax leaves
# the run, the epoch under way not committed) or by the end of its input ("drain": that
# epoch is written and committed, Bytewax's last epoch snapshotting every node). When
# nothing moves for this long before that (or the dataflow still moves at flow.stop_drain_s:
# cloud/stop_grace.py), Bytewax is interrupted.
DRAIN_S = STALL_S
STOPPED_WITHOUT_IT = "stopped on a signal; a restart resumes from the last committed epoch"
# An InfluxDB secret file that cannot be read (cli._wait_for_secrets): looked at again so often,
# logged again so often.
SECRET_POLL_S = 5.0
SECRET_REMINDER_S = 600.0
GIVE_UP_AFTER_S = 120.0  # `recompute`: how long an unavailable InfluxDB is waited for
# Bytewax's (timely's) words when a connection to another process of a cluster breaks: the
# panic of the thread that sent to it or received from it, raised again where it is joined.
PEER_LOST_PANICS = ("Send thread panic", "Recv thread panic")
# A cluster process's watch on its connections to the others (cloud/peer_watch.py): looked
# at so often; one lost for so long without Bytewax ending the run (its own path, which
# comes first when it notices) makes the process exit for a restart.
PEER_POLL_S = 1.0
PEER_GONE_GRACE_S = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="urbanpulse cloud", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="ingest + dataflow, with recovery on (the default way to run)")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument("--no-ingest", action="store_true", help="run the dataflow only")
    run.add_argument("--process-id", type=int, default=None, help="overrides flow.process_id")
    ing = sub.add_parser("ingest", help="MQTT to the journal only")
    ing.add_argument("--config", type=Path, required=True)
    ing.add_argument("--instance", default="i0")
    ing.add_argument("--until-stdin-closes", action="store_true",
                     help="stop at EOF on stdin (how `cloud run` ties its ingest children to itself)")
    init = sub.add_parser("init-db", help="create the database and retention policies")
    init.add_argument("--config", type=Path, required=True)
    init.add_argument("--admin-user", default="admin")
    init.add_argument("--admin-password-file", type=Path, required=True)
    new = sub.add_parser("new-state", help="make a new recovery store on purpose, when the one "
                                           "beside trimmed journals is lost (docs/runbook.md)")
    new.add_argument("--config", type=Path, required=True)
    check = sub.add_parser("check-config", help="validate a processor config and exit")
    add_config_argument(check)
    rec = sub.add_parser("recompute", help="rebuild a site's per-sensor agg_1m/agg_1h windows and "
                                           "domain rollups (wards, hospital, traffic, air) from the "
                                           "raw points, e.g. after late data")
    rec.add_argument("--config", type=Path, required=True)
    rec.add_argument("--site", type=_site_id, required=True)
    rec.add_argument("--from", dest="start", type=aware_datetime, default=None,
                     help="first hour to rebuild (rounded down to the hour; default: --to minus 24 h)")
    rec.add_argument("--to", dest="end", type=aware_datetime, default=None,
                     help="end of the hours to rebuild (rounded up to the hour; default: now)")
    rec.add_argument("--give-up-after", type=float, default=GIVE_UP_AFTER_S, metavar="SECONDS",
                     help="give up once the waits for an unavailable InfluxDB add up to this "
                          "(default %(default)s)")
    return p


def _site_id(text: str) -> str:
    try:
        return validate_id("site", text)
    except UrbanpulseError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cmd == "check-config":
        config_of(parser, args)
    try:
        cfg = load_cloud_config(args.config)
        if args.cmd == "run" and args.process_id is not None:
            _check_process_id(cfg, args.process_id)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        if args.cmd == "check-config":
            print(f"{args.config}: ok")
            return 0
        if args.cmd == "init-db":
            return _init_db(cfg, args.admin_user, args.admin_password_file)
        if args.cmd == "ingest":
            return _ingest_only(cfg, args.instance, args.until_stdin_closes)
        if args.cmd == "new-state":
            return _new_state(cfg, args.config)
        if args.cmd == "recompute":
            return _recompute(cfg, args.site, args.start, args.end, args.give_up_after)
        return run(cfg, ingest=not args.no_ingest, process_id=args.process_id,
                   config_path=args.config)
    except InfluxAccessError as exc:
        # `recompute`'s writer refused: a one-off command stops at once (exit 2, as for a
        # configuration error) rather than wait out --give-up-after.
        print(f"urbanpulse cloud {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UrbanpulseError as exc:
        print(f"urbanpulse cloud {args.cmd}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


def _check_process_id(cfg: CloudConfig, process_id: int) -> None:
    """`--process-id` as `flow.process_id` is checked: one of the cluster's processes (0
    without `flow.addresses`). Another one read no journal of its own, or waited for ever
    for processes that do not exist."""
    processes = max(1, len(cfg.flow.addresses))
    if not 0 <= process_id < processes:
        raise ConfigError("--process-id", f"must be in [0, {processes}): flow.addresses lists "
                                          f"{len(cfg.flow.addresses)} processes, got {process_id}")


def _init_db(cfg: CloudConfig, user: str, password_file: Path) -> int:
    from cloud.initdb import init_db
    from urbanpulse.influx_http import InfluxCAFileError, InfluxHTTP

    try:
        password = password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("--admin-password-file", exc.strerror or str(exc)) from exc
    try:
        admin = InfluxHTTP(cfg.influx.url, user, password, ca_file=cfg.influx.ca_file)
    except InfluxCAFileError as exc:
        raise ConfigError("influx.ca_file", str(exc)) from exc
    with admin:
        try:
            for stmt in init_db(admin, cfg.influx.database, cfg.retention):
                print(stmt)
        except ConfigError as exc:
            print(f"config error: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    return 0


def recompute_hours(start: datetime | None, end: datetime | None, now: datetime
                    ) -> tuple[int, int]:
    """`recompute`'s [from, to) in epoch ns, widened to whole hours."""
    from urbanpulse.clock import to_epoch_ns

    hour = 3600 * 10**9
    end_ns = to_epoch_ns(end or now)
    end_ns += -end_ns % hour
    start_ns = to_epoch_ns(start) if start is not None else end_ns - 24 * hour
    start_ns -= start_ns % hour
    if start_ns >= end_ns:
        raise ConfigError("--from", "must come before --to")
    return start_ns, end_ns


def _recompute(cfg: CloudConfig, site: str, start: datetime | None, end: datetime | None,
               give_up_after_s: float) -> int:
    from cloud.logic.domain.late import SCOPE_KINDS
    from cloud.logic.domain_replay import ReplaySpan
    from cloud.sink import check_writer, make_writer
    from urbanpulse.clock import SystemClock, from_epoch_ns
    from urbanpulse.wire import format_ts

    try:
        start_ns, end_ns = recompute_hours(start, end, SystemClock().now())
        if cfg.influx.reader_password_file is None:
            raise ConfigError("influx.reader_password_file", "`recompute` reads the raw points with "
                              "the reader's credentials: set it and influx.reader_username")
    except ConfigError as exc:
        print(f"urbanpulse cloud recompute: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # A writer InfluxDB refuses stops it at once (exit 2), not after --give-up-after.
    check_writer(cfg.influx)
    writer = make_writer(cfg.influx, wait=_give_up_after(give_up_after_s))
    total = 0
    span = f"[{format_ts(from_epoch_ns(start_ns))}, {format_ts(from_epoch_ns(end_ns))})"
    try:
        sensors, written = rebuild_site_windows(writer, site, start_ns, end_ns)
        print(f"{site} windows {span}: {sensors} sensors, {written} windows written")
        total += written
        for scope in SCOPE_KINDS:
            # the doors split by the config's roles: a recompute after a change rewrites them
            written = writer.replay_domain(ReplaySpan(scope, site, "", start_ns, end_ns,
                                                      cfg.flow.door_roles))
            print(f"{site} {scope} {span}: {written} points")
            total += written
    finally:
        writer.close()
    refused = writer.stats.refused_requests
    print(f"{site}: {total} points written" + (f", {refused} requests refused by InfluxDB "
                                               f"(last: {writer.stats.last_error})" if refused else ""))
    return EXIT_RUNTIME if refused else 0


def site_series(writer: InfluxWriter, site: str, measurement: str, start_ns: int, end_ns: int
                ) -> list[tuple[str, str, str]]:
    """The (node, sensor, kind) of the site's series of `measurement` in the raw policy
    that InfluxDB holds around [start_ns, end_ns) (its shards there: `SHOW SERIES` with a
    time condition), read as the reader."""
    from cloud.logic.domain_replay import series_tags
    from cloud.logic.recompute import influx_literal
    from cloud.logic.records import RP_RAW

    q = (f'SHOW SERIES FROM "{RP_RAW}"."{measurement}" WHERE "site" = {influx_literal(site)} '
         f"AND time >= {start_ns} AND time < {end_ns + 1000}")  # + 1000: an interval's end
    out: set[tuple[str, str, str]] = set()
    for row in writer.read_rows(q):
        tags = series_tags(str(row.get("key", "")))
        node, sensor, kind = tags.get("node"), tags.get("sensor"), tags.get("kind")
        if tags.get("site") == site and node and sensor and kind:
            out.add((node, sensor, kind))
    return sorted(out)


def rebuild_site_windows(writer: InfluxWriter, site: str, start_ns: int, end_ns: int
                         ) -> tuple[int, int]:
    """Rebuilds the per-sensor agg_1m and agg_1h windows of every sensor of `site` over
    [start_ns, end_ns) (whole hours) from the raw points, by the processor's own rebuild
    path (`InfluxWriter.rebuild_windows`, one read per node, measurement and span of at
    most READ_SPAN_NS); returns the sensors and the windows written. A window none of
    whose raw points counts is left as it is."""
    from cloud.logic.recompute import READ_SPAN_NS, Recompute
    from cloud.logic.records import RP_1H, RP_1M
    from cloud.logic.rollup import HOUR_NS, MINUTE_NS
    from urbanpulse.wire.kinds import KINDS

    sensors = 0
    before = writer.stats.points
    for measurement in sorted({k.measurement for k in KINDS.values()}):
        by_node: dict[str, list[tuple[str, str]]] = {}
        for node, sensor, kind in site_series(writer, site, measurement, start_ns, end_ns):
            by_node.setdefault(node, []).append((sensor, kind))
            sensors += 1
        for node, of_node in by_node.items():
            for lo in range(start_ns, end_ns, READ_SPAN_NS):  # a node's read at a time
                hi = min(end_ns, lo + READ_SPAN_NS)
                writer.rebuild_windows([
                    Recompute(rp, measurement, site, node, sensor, kind, width, at).encode()
                    for sensor, kind in of_node
                    for rp, width in ((RP_1M, MINUTE_NS), (RP_1H, HOUR_NS))
                    for at in range(lo, hi, width)])
    return sensors, writer.stats.points - before


def _give_up_after(seconds: float) -> Callable[[float], bool]:
    """The writer's backoff wait for a one-off command: it sleeps, and says stop (True)
    once the waits for an unavailable InfluxDB add up to `seconds`."""
    waited = [0.0]
    pause = threading.Event()  # never set: its wait is the backoff's sleep

    def wait(delay: float) -> bool:
        if waited[0] >= seconds:
            return True
        waited[0] += delay
        pause.wait(delay)
        return False

    return wait


def _start_ingest(cfg: CloudConfig, instance: str) -> Ingest:
    ingest = make_ingest(cfg, instance)
    ingest.start()
    return ingest


def make_ingest(cfg: CloudConfig, instance: str, on_failure: Callable[[], None] | None = None
                ) -> Ingest:
    """The ingest instance `instance` as the config sets it up, not started (no socket yet)."""
    from cloud.ingest import Ingest
    from cloud.journal import Journal, journal_path

    journal = Journal(journal_path(cfg.journal_dir, instance), instance).open()
    return Ingest(cfg.mqtt, journal, instance=instance, min_free_bytes=cfg.state_min_free_bytes,
                  on_failure=on_failure)


RECOVERY_LOCK_WAIT_S = 60.0


def prepare_recovery_dir(rdir: Path, parts: int, cancel: threading.Event | None = None) -> None:
    """Create the recovery store once: the processes of a cluster start together on one
    state dir, and two of them creating its partitions at once made one fail.

    It is made beside its place and renamed into it, whole: Bytewax makes one SQLite file
    per partition, and a disk that fills up midway (or a kill) left the first ones made,
    which every later start took for a store and Bytewax refused ("Missing recovery
    partitions"): the processor failed at each start for ever, room or not. Now such a
    start fails naming the store and why, and the next one makes it again."""
    from cloud.fresh_state import store_is_new
    from cloud.ingest import InstanceLock

    lock = InstanceLock(rdir.parent / f"{rdir.name}.lock",
                        holder="another process preparing the recovery store")
    lock.acquire(RECOVERY_LOCK_WAIT_S, cancel)
    try:
        if store_is_new(rdir):
            _make_recovery_dir(rdir, parts)
    except OSError as exc:
        raise CloudError(f"recovery store {rdir} (under state.dir): {exc.strerror or exc}") from exc
    finally:
        lock.release()


def _make_recovery_dir(rdir: Path, parts: int) -> None:
    """A new store of `parts` partitions at `rdir` (absent or empty), made whole in a
    sibling directory and renamed into place (the caller holds the store's lock)."""
    from bytewax.recovery import init_db_dir

    fresh = rdir.parent / f".{rdir.name}.new"
    shutil.rmtree(fresh, ignore_errors=True)  # a start that failed midway
    fresh.mkdir(parents=True)
    try:
        init_db_dir(fresh, parts)
    except BaseException as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        # Bytewax raises its SQLite errors (a full disk among them) as a Rust panic, a
        # BaseException of pyo3's own module
        if type(exc).__name__ != "PanicException":
            raise
        raise CloudError(f"recovery store {rdir} (under state.dir) could not be made: {exc}") from exc
    if rdir.exists():
        rdir.rmdir()
    fresh.rename(rdir)
    directory = os.open(rdir.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename survives a power cut
    finally:
        os.close(directory)


def _create_journals(cfg: CloudConfig, instances: list[str]) -> None:
    from cloud.journal import Journal, journal_path

    for instance in instances:
        Journal(journal_path(cfg.journal_dir, instance), instance).open().close()


def _new_state(cfg: CloudConfig, config_path: Path) -> int:
    """`cloud new-state`: the recovery store made anew, the processor's states empty, and
    what to rebuild once it has read the journals again."""
    from cloud.fresh_state import journal_sites, store_is_new, trimmed_journals
    from urbanpulse.clock import from_epoch_ns
    from urbanpulse.wire import format_ts

    rdir = cfg.recovery_dir
    if not store_is_new(rdir):
        print(f"urbanpulse cloud new-state: {rdir} holds a recovery store already; nothing done "
              "(to start over, stop every processor and move it aside first)", file=sys.stderr)
        return EXIT_CONFIG
    trimmed = trimmed_journals(cfg.journal_dir)
    processes = max(1, len(cfg.flow.addresses))
    parts = processes * cfg.flow.workers
    prepare_recovery_dir(rdir, parts)
    print(f"{rdir}: a new recovery store of {parts} partition{'s' if parts > 1 else ''}; the "
          "processor reads the journals from their start")
    firsts = [t.first_received_ns for t in trimmed if t.first_received_ns is not None]
    for t in trimmed:
        print(f"{t.path.name}: records 1-{t.let_go} were trimmed")
    if not firsts:
        return 0
    hour = 3600 * 10**9
    since = min(firsts) - cfg.flow.aggregate_horizon_s * 10**9
    since -= since % hour
    start = format_ts(from_epoch_ns(since))
    sites = sorted(journal_sites(cfg.journal_dir))
    print(f"Once `cloud run` has read them again, rebuild the hours from {start} on for every "
          "site, from the complete raw points (the ledger's hours around "
          f"{format_ts(from_epoch_ns(min(firsts) - min(firsts) % hour))} stay partial):")
    for site in sites or ["SITE"]:
        print(f"  urbanpulse cloud recompute --config {config_path} --site {site} --from {start}")
    return 0


def _ingest_only(cfg: CloudConfig, instance: str, until_stdin_closes: bool = False) -> int:
    from cloud.ingest import stop_when_stdin_closes
    from cloud.stop_signals import StopSignals

    stop = threading.Event()
    StopSignals(lambda again: stop.set())  # the process's end closes it
    if until_stdin_closes:
        stop_when_stdin_closes(stop.set)
    ingest = make_ingest(cfg, instance, on_failure=stop.set)
    ingest.start()
    stop.wait()
    ingest.stop()
    return 0 if ingest.failure is None else EXIT_RUNTIME


def _start_ingest_processes(cfg: CloudConfig, config_path: Path | None, instances: list[str]
                            ) -> list[IngestProcess]:
    from cloud.ingest import IngestProcess, make_ingest_client

    if config_path is None:
        raise CloudError("flow.ingest_mode = 'process' needs the config file's path")
    make_ingest_client(cfg.mqtt, cfg.mqtt.client_id)  # refuse a bad password or CA file here
    children = [IngestProcess(config_path, instance) for instance in instances]
    for child in children:
        child.start()
    return children


def _interrupt_unless_ended(ended: threading.Event, progress: EpochProgress, store: Path | None,
                            cap_s: float, interrupt: Callable[[], None],
                            abort: AbortStop | None = None) -> None:
    """The stop's second step, when the first takes too long: InfluxDB down or slow holds
    the last epoch's writes, and a cluster process waits for the others to end theirs. A
    last epoch that moves on (its snapshots taken, its points written) is waited for up to
    `cap_s` (flow.stop_drain_s): interrupted, Bytewax reports the call it was in with a panic.
    `store`: the recovery store, whose files grow as Bytewax writes the epoch's snapshots;
    `interrupt`: the stop's last step, as on a second signal.

    With `abort` (flow.stop = "abort") what is waited for is the journal source's next batch,
    which raises AbortExecution: at once, or once the epoch end under way is done (waited for
    the same way, as it moves on). Raised, the run ends at once, unless other workers or
    processes of a cluster go on (Bytewax then waits for them, for ever): it is left
    SHUTDOWN_GRACE_S later, as after an interrupt (`_exit_unless_set_within`), and never
    interrupted, which could raise inside the partitions' `close` as Bytewax leaves."""
    if abort is None:
        why = wait_for_last_epoch(ended.wait, lambda: progress.marker(store), cap_s)
    else:
        why = wait_for_last_epoch(lambda timeout: ended.wait(timeout) or abort.raised,
                                  lambda: progress.moves(store), cap_s)
        if why is None and not ended.is_set():
            _exit_unless_set_within(ended, SHUTDOWN_GRACE_S)
    if why is None:
        return
    log = logging.getLogger("urbanpulse.cloud")
    if abort is not None:
        log.log(logging.INFO if why is DrainEnd.STALLED else logging.WARNING,
                "the dataflow did not come back to its journal source within %g s of the "
                "signal, %s; stopping it where it is (a restart reads the epoch under way again "
                "from the journal)", STALL_S if why is DrainEnd.STALLED else cap_s,
                "nothing moving (InfluxDB down or slow, or another process of the cluster "
                "stopped first)" if why is DrainEnd.STALLED else
                "though its epoch end was still moving (flow.stop_drain_s)")
    elif why is DrainEnd.STALLED:
        log.info("the last epoch was not written within %g s of the signal, nothing of it moving "
                 "(InfluxDB down or slow, or another process of the cluster still running); "
                 "stopping without it (a restart reads it again from the journal)", STALL_S)
    else:
        log.warning("the last epoch was not written within %g s of the signal (flow.stop_drain_s), "
                    "though it was still being written; stopping without it (a restart reads it "
                    "again from the journal)", cap_s)
    interrupt()


def _exit_unless_set_within(ended: threading.Event, grace_s: float) -> None:
    """A Bytewax cluster process stops only together with the others: one stopped on its
    own (its host's unit) would wait for them. Leaving is safe at any moment: nothing
    uncommitted is lost (the journals hold it) and the ingest children end on EOF."""
    if not ended.wait(grace_s):
        logging.getLogger("urbanpulse.cloud").warning(
            "the dataflow did not stop within %g s of the signal; exiting (a restart resumes "
            "from the last committed epoch)", grace_s)
        logging.shutdown()
        os._exit(0)


def unreadable_secrets(cfg: CloudConfig) -> list[str]:
    """The InfluxDB files of the config that cannot be used now, each as "<key> <path>:
    <why>": a secret file missing or unreadable, a CA file (https) that cannot be read or
    holds no certificate; validation, doing no I/O, does not look at them."""
    from cloud.errors import SinkError
    from cloud.sink import read_secret
    from urbanpulse.influx_http import InfluxCAFileError, check_ca_file

    i = cfg.influx
    files: list[tuple[str, Path | None]] = [
        ("influx.token_file", i.token_file) if i.api == "v2" else ("influx.password_file", i.password_file),
        ("influx.reader_password_file", i.reader_password_file)]
    out = []
    for key, path in files:
        if path is None:
            continue
        try:
            read_secret(path, key)  # as the writer and the reader will read it
        except SinkError as exc:
            out.append(str(exc))  # "<key> <path>: <why>"
    if i.ca_file is not None and i.url.startswith("https://"):
        try:
            check_ca_file(i.ca_file)
        except InfluxCAFileError as exc:
            out.append(f"influx.{exc}")  # "influx.ca_file <path>: <why>"
    return out


def _wait_for_secrets(cfg: CloudConfig, wait: Callable[[float], bool]) -> bool:
    """Until every InfluxDB secret file can be read, logs which cannot (at once, then every
    SECRET_REMINDER_S) and looks again every SECRET_POLL_S, while the ingest journals.
    `wait(seconds)` returns True when the run is to stop: then False."""
    log = logging.getLogger("urbanpulse.cloud")
    since_reminder = SECRET_REMINDER_S
    while missing := unreadable_secrets(cfg):
        if since_reminder >= SECRET_REMINDER_S:
            log.error("cannot read %s: the processor waits for %s (the ingest journals "
                      "meanwhile; looked at again every %g s)", "; ".join(missing),
                      "it" if len(missing) == 1 else "them", SECRET_POLL_S)
            since_reminder = 0.0
        if wait(SECRET_POLL_S):
            return False
        since_reminder += SECRET_POLL_S
    return True


def _check_influx_access(cfg: CloudConfig,
                         checks: tuple[Callable[[CloudInflux], None], ...]) -> None:
    """Start-up steps, after config validation (which does no I/O): a writer or a reader
    InfluxDB refuses is logged at ERROR with what to grant, and the run starts all the same.
    Stopping would stop the ingest too, while the broker queues for it only up to its
    `max_queued_messages` and drops the rest (a node lets go of a reading once the broker
    has it); running, the ingest journals everything, and the refused writes and reads are
    held and retried exactly as when a grant is lost at run time."""
    for check in checks:
        try:
            check(cfg.influx)
        except InfluxAccessError as exc:
            logging.getLogger("urbanpulse.cloud").error(
                "%s. Starting all the same: the ingest journals what arrives, and what InfluxDB "
                "refuses is held and retried until it is let through (no restart needed for a "
                "GRANT; restart after fixing a password file or influx.url)", exc)


def run(cfg: CloudConfig, *, ingest: bool = True, process_id: int | None = None,
        config_path: Path | None = None) -> int:
    # The engine before anything starts: without it (an edge-only install) the run stops
    # here, naming the package, not after its ingest took messages nothing can process.
    import bytewax.run  # noqa: F401

    from cloud.journal import partition_names
    from cloud.sink import check_reader, check_writer
    from cloud.stop_signals import StopSignals

    pid = cfg.flow.process_id if process_id is None else process_id
    processes = max(1, len(cfg.flow.addresses))
    partitions = partition_names(max(cfg.flow.ingest_instances, processes))
    mine = [p for n, p in enumerate(partitions) if n % processes == (pid or 0)]
    # Before the cluster forms: the source opens every journal and refuses a missing one, so
    # that a process that does not share state.dir stops at start instead of losing data.
    _create_journals(cfg, mine)
    if cfg.flow.recovery:  # nor a new recovery store by itself beside trimmed journals
        from cloud.fresh_state import FreshStateRefused, check_new_store

        try:
            check_new_store(cfg.recovery_dir, cfg.journal_dir)
        except FreshStateRefused as exc:
            print(f"urbanpulse cloud run: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    # The ingest first, before anything of InfluxDB's: whatever keeps the processor from
    # writing, the broker's queue for it is bounded, and the journal is not.
    ingests: list[Ingest | IngestProcess] = []
    children: list[IngestProcess] = []

    def stop_begun() -> None:
        # At every signal (StopSignals' thread): a signal to the process group stopped the ingest
        # children too; their supervisors must not take that for a crash and restart them.
        for child in children:
            child.stop_begun()

    try:
        if ingest:
            if cfg.flow.ingest_mode == "process":
                children = _start_ingest_processes(cfg, config_path, mine)
                ingests.extend(children)
            else:
                ingests.extend(_start_ingest(cfg, p) for p in mine)
        waiting = threading.Event()

        def on_signal(again: bool) -> None:
            stop_begun()
            waiting.set()

        signals = StopSignals(on_signal)  # the process's end closes it
        if not _wait_for_secrets(cfg, waiting.wait):
            return _stopped_before_the_dataflow()
        _check_influx_access(cfg, (check_writer, check_reader))
        if waiting.is_set():  # a signal during the checks
            return _stopped_before_the_dataflow()
        return _run_dataflow(cfg, partitions, mine, pid, processes, ingest, waiting, stop_begun,
                             signals)
    finally:
        for i in ingests:
            i.stop()


def peer_lost(exc: BaseException) -> bool:
    """Whether Bytewax ended the run because a connection to another process of the cluster
    broke (a Rust panic, pyo3's PanicException: a BaseException of a module of its own)."""
    return type(exc).__name__ == "PanicException" and str(exc).startswith(PEER_LOST_PANICS)


def peer_lost_message(cfg: CloudConfig, why: str) -> str:
    return ("lost the connection to another process of the cluster (flow.addresses: "
            f"{', '.join(cfg.flow.addresses)}): {why}. Exiting to be started again: nothing is "
            "lost (the journals hold what no committed epoch wrote), and the cluster forms again "
            "once every process runs")


def _watch_peers(cfg: CloudConfig, process_id: int, stand_down: Callable[[], bool],
                 done: threading.Event) -> None:
    """The watch thread of a cluster process (cloud/peer_watch.py): a connection to another
    process lost (closed, reset, timed out) for PEER_GONE_GRACE_S while this one runs on,
    and Bytewax not ending the run, makes it exit with EXIT_RUNTIME, as Bytewax's own
    lost-peer panic does. Leaving is safe at any moment (as `_exit_unless_set_within`).
    `stand_down()`: this process is stopping (its peers' connections close as the run ends)."""
    from cloud.peer_watch import PeerWatch, PeerWatchError

    log = logging.getLogger("urbanpulse.cloud")
    watch = PeerWatch(cfg.flow.addresses, process_id, PEER_GONE_GRACE_S)
    while not done.wait(PEER_POLL_S) and not stand_down():
        armed = watch.armed
        try:
            lost = watch.poll(time.monotonic())
        except PeerWatchError as exc:
            log.error("cannot watch the connections to the other processes of the cluster (%s): "
                      "a process that leaves without Bytewax noticing is not noticed here "
                      "either", exc)
            return
        if watch.armed and not armed:
            log.info("cluster formed: watching the connections with %s (%s)",
                     ", ".join(c.peer for c in watch.connections),
                     "TCP keepalive on" if watch.keepalive_error is None else
                     f"without TCP keepalive, {watch.keepalive_error}: a host that vanishes is "
                     "noticed only when the kernel gives up on the data waiting for it")
        if lost is None or stand_down() or done.is_set():
            continue
        print("urbanpulse cloud run: " + peer_lost_message(
            cfg, f"{lost.describe()}, and the dataflow did not end within {PEER_GONE_GRACE_S:g} s "
                 "(Bytewax noticed nothing: the process left through its stop's grace period, or "
                 "ended its part of the dataflow), its own log says why"),
            file=sys.stderr, flush=True)
        logging.shutdown()
        os._exit(EXIT_RUNTIME)


def _stopped_before_the_dataflow() -> int:
    logging.getLogger("urbanpulse.cloud").info("stopped on a signal before the dataflow started")
    return 0


def _run_dataflow(cfg: CloudConfig, partitions: list[str], mine: list[str], pid: int | None,
                  processes: int, ingest: bool, signalled: threading.Event,
                  stop_begun: Callable[[], None], signals: StopSignals) -> int:
    """The dataflow, until it ends or a signal stops it; `signalled`: set by a signal
    received before this sets its own action, which then ends the run at once;
    `stop_begun`: called on every signal, at once (the ingest children's supervisors).
    `signals`: a first signal (or a burst: cloud/stop_signals.py) drains the last epoch, a
    second one, or the drain's grace ending, stops Bytewax with a KeyboardInterrupt."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from cloud.flow import AbortStop, build_flow
    from cloud.gc_policy import tune_for_streaming

    recovery = None
    if cfg.flow.recovery:
        rdir = cfg.recovery_dir
        try:
            prepare_recovery_dir(rdir, processes * cfg.flow.workers, cancel=signalled)
        except CloudError:
            if signalled.is_set():
                return _stopped_before_the_dataflow()
            raise
        recovery = RecoveryConfig(str(rdir), timedelta(seconds=cfg.flow.backup_interval_s))

    from bytewax.errors import BytewaxRuntimeError

    # Set at the first signal: the sources end the run (`build_flow`)
    draining = AbortStop() if cfg.flow.stop == "abort" else threading.Event()
    stopping = threading.Event()
    dataflow_ended = threading.Event()
    progress = EpochProgress()

    escalation = threading.Lock()  # the second signal's thread vs the drain's grace thread
    interrupted = threading.Event()  # asked for: `stopping` is set by the handler, later

    def interrupt() -> None:
        # Too long, or a second signal: the handler, in the main thread, sets `stopping` (the
        # sink's waits for InfluxDB end: an outage must not hold the stop) and raises the
        # KeyboardInterrupt Bytewax stops on, nothing between the two (cloud/stop_signals.py
        # says why). The main thread takes `stopping`'s lock nowhere else: nothing there
        # waits for it. What is not written is in no committed epoch.
        with escalation:
            if dataflow_ended.is_set() or interrupted.is_set():
                return
            interrupted.set()
            threading.Thread(target=_exit_unless_set_within, args=(dataflow_ended, SHUTDOWN_GRACE_S),
                             name="shutdown-grace", daemon=True).start()
            signals.interrupt_main(stopping.set)

    def stop(again: bool) -> None:
        stop_begun()
        if dataflow_ended.is_set():
            return  # the run is over: nothing to stop
        # First the journal source ends the run: by an abort, or by the end of its input,
        # the epoch under way then written and committed (Bytewax stopped by an exception
        # logs a panic and its backtrace).
        if not draining.is_set():
            draining.set()
            threading.Thread(target=_interrupt_unless_ended,
                             args=(dataflow_ended, progress,
                                   None if recovery is None else cfg.recovery_dir,
                                   cfg.flow.stop_drain_s, interrupt,
                                   draining if isinstance(draining, AbortStop) else None),
                             name="drain-grace", daemon=True).start()
        elif again and not (isinstance(draining, AbortStop) and draining.raised):
            # (after an abort Bytewax is leaving, closing the partitions: never interrupted)
            interrupt()

    signals.set_action(stop)
    if signalled.is_set():  # received before the action above was set
        return _stopped_before_the_dataflow()
    if cfg.flow.gc_tuning:
        tune_for_streaming()
    logging.getLogger("urbanpulse.cloud").info(
        "processor %d of %d starting: journals %s, ingest %s, recovery %s", pid or 0, processes,
        ", ".join(mine), cfg.flow.ingest_mode if ingest else "off",
        f"in {cfg.recovery_dir} (a snapshot every epoch, {cfg.flow.epoch_interval_s:g} s)"
        if recovery else "off")
    if processes > 1:
        threading.Thread(target=_watch_peers, args=(cfg, pid or 0, draining.is_set, dataflow_ended),
                         name="peer-watch", daemon=True).start()
    try:
        try:
            cli_main(build_flow(cfg, partitions, process_id=pid or 0, stop=stopping, drain=draining,
                                progress=progress),
                     workers_per_process=cfg.flow.workers,
                     process_id=pid if cfg.flow.addresses else None,
                     addresses=list(cfg.flow.addresses) or None,
                     epoch_interval=timedelta(seconds=cfg.flow.epoch_interval_s),
                     recovery_config=recovery)
        finally:
            with escalation:
                dataflow_ended.set()  # at once: a signal from now on finds nothing to stop
            signals.cancel_interrupt()  # one asked for as the run ended
        if isinstance(draining, AbortStop) and draining.raised:
            logging.getLogger("urbanpulse.cloud").info(
                "stopped on a signal by an abort: the epoch under way is not committed, a "
                "restart reads it again from the journal")
        elif draining.is_set():
            logging.getLogger("urbanpulse.cloud").info(
                "stopped on a signal, the last epoch written and committed")
    except KeyboardInterrupt:
        logging.getLogger("urbanpulse.cloud").info(STOPPED_WITHOUT_IT)
    except BytewaxRuntimeError as exc:
        # Bytewax ends the run this way on SIGINT/SIGTERM: a clean stop, not a failure (its
        # worker reports the interrupted step with a panic message first).
        if not stopping.is_set() and "signal received" not in str(exc):
            raise CloudError(f"dataflow failed: {exc}") from exc
        logging.getLogger("urbanpulse.cloud").info(STOPPED_WITHOUT_IT)
    except BaseException as exc:
        if processes < 2 or not peer_lost(exc):
            raise
        if draining.is_set():
            logging.getLogger("urbanpulse.cloud").info(
                "stopped on a signal, another process of the cluster gone first (%s); a restart "
                "resumes from the last committed epoch", exc)
            return 0
        raise CloudError(peer_lost_message(
            cfg, f"it stopped, failed or cannot be reached, its own log says which (Bytewax: {exc})")
        ) from exc
    finally:
        dataflow_ended.set()
    return 0
