"""`urbanpulse bridge`: decode captures or live ports, emulate devices, probe ports."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from firmware_bridge.decoding import FrameDecoder
from firmware_bridge.emulator.pty_device import PtyEmulator
from firmware_bridge.errors import BridgeError, LinkTimeoutError, SerialLinkError
from firmware_bridge.probe import probe
from firmware_bridge.protocols import ProtocolSpec, get_protocol, protocol_names
from firmware_bridge.scripts import ScriptError, emulator_values
from firmware_bridge.transport import open_link
from urbanpulse.closed_stdout import is_closed_stdout, run_command

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
_CHUNK = 1 << 16

FAULT_COMMANDS = "garbage | truncate | checksum | unplug | replug | quit"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="urbanpulse bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    protocols = protocol_names()

    dec = sub.add_parser("decode", help="decode a capture file, stdin or a live port to JSON lines")
    dec.add_argument("--protocol", required=True, choices=protocols)
    dec.add_argument("input", nargs="?", help="capture file, or - for stdin (the default)")
    dec.add_argument("--port", help="decode a live serial port instead of a file")
    dec.add_argument("--baudrate", type=int, help="override the protocol's rate")
    dec.add_argument("--duration", type=float, help="with --port: stop after this many seconds")

    emu = sub.add_parser(
        "emulate",
        help="a device on a pseudo-terminal (prints its path; Ctrl-C stops)",
        description="Faults on demand: type one of " + FAULT_COMMANDS + " on stdin.",
    )
    emu.add_argument("--protocol", required=True, choices=protocols)
    emu.add_argument("--link", help="also make this stable symlink to the pty (like /dev/serial/by-id)")
    emu.add_argument("--script", type=Path, help="JSON lines of values, replayed in a loop")
    emu.add_argument("--period", type=float, help="seconds between reports")
    emu.add_argument("--warmup", type=float, help="seconds of warm-up zeros (datasheet value by default)")
    emu.add_argument("--seed", type=int, help="seed of the fault generator")
    emu.add_argument("--no-pace", action="store_true", help="send frames at once, not at the baud rate")
    emu.add_argument("--duration", type=float, help="stop after this many seconds")

    prb = sub.add_parser("probe", help="find out which known device is on a port")
    prb.add_argument("--port", required=True)
    prb.add_argument("--listen", type=float, default=2.5, help="seconds to listen at each rate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    spec = get_protocol(args.protocol) if getattr(args, "protocol", None) else None
    try:
        if args.command == "decode":
            assert spec is not None
            return _decode(args, spec, parser)
        if args.command == "emulate":
            assert spec is not None
            return _emulate(args, spec)
        return _probe(args)
    except KeyboardInterrupt:
        return EXIT_OK


# -- decode ---------------------------------------------------------------------------------


class _Printer:
    def __init__(self, spec: ProtocolSpec, out: TextIO) -> None:
        self.spec = spec
        self.out = out
        self.suspect_zero = 0

    def frames(self, frames: Sequence[object]) -> None:
        for frame in frames:
            record = self.spec.record(frame)
            if record is None:
                continue
            if getattr(frame, "suspect_zero", False):
                self.suspect_zero += 1
            self.out.write(json.dumps(record) + "\n")
        self.out.flush()


def _decode(args: argparse.Namespace, spec: ProtocolSpec, parser: argparse.ArgumentParser) -> int:
    if args.port and args.input:
        parser.print_usage(sys.stderr)
        print("urbanpulse bridge decode: give a FILE or --port, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.duration is not None and not args.port:
        print("urbanpulse bridge decode: --duration needs --port", file=sys.stderr)
        return EXIT_USAGE
    decoder = spec.new_decoder()
    printer = _Printer(spec, sys.stdout)
    try:
        if args.port:
            asyncio.run(_decode_port(args, spec, decoder, printer))
        else:
            _decode_stream(args.input or "-", decoder, printer)
    except (OSError, SerialLinkError) as exc:
        if is_closed_stdout(exc):
            raise  # `decode ... | head -1`: run_command ends it quietly
        _counters(decoder, printer)
        print(f"urbanpulse bridge decode: cannot read input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    _counters(decoder, printer)
    return EXIT_OK


def _decode_stream(source: str, decoder: FrameDecoder[object], printer: _Printer) -> None:
    with _open_binary(source) as stream:
        while chunk := stream.read(_CHUNK):
            printer.frames(decoder.feed(chunk))
    printer.frames(decoder.finish())


@contextlib.contextmanager
def _open_binary(source: str) -> Iterator[BinaryIO]:
    if source == "-":
        yield sys.stdin.buffer
    else:
        with open(source, "rb") as stream:
            yield stream


async def _decode_port(
    args: argparse.Namespace, spec: ProtocolSpec, decoder: FrameDecoder[object], printer: _Printer
) -> None:
    loop = asyncio.get_running_loop()
    deadline = None if args.duration is None else loop.time() + args.duration
    link = await open_link(args.port, args.baudrate or spec.baudrate, timeout_s=1.0)
    try:
        while deadline is None or loop.time() < deadline:
            wait = 1.0 if deadline is None else max(0.01, min(1.0, deadline - loop.time()))
            try:
                data = await link.read(timeout_s=wait)
            except LinkTimeoutError:
                continue
            printer.frames(decoder.feed(data))
    finally:
        await link.close()


def _counters(decoder: FrameDecoder[object], printer: _Printer) -> None:
    counters: dict[str, Any] = decoder.stats.as_dict() if hasattr(decoder.stats, "as_dict") else {}
    counters["suspect_zero"] = printer.suspect_zero
    counters["bytes_pending"] = decoder.buffered
    print(json.dumps(counters), file=sys.stderr)


# -- emulate --------------------------------------------------------------------------------


def _emulate(args: argparse.Namespace, spec: ProtocolSpec) -> int:
    options: dict[str, Any] = {"pace": not args.no_pace}
    if args.link:
        options["link_path"] = args.link
    if args.seed is not None:
        options["seed"] = args.seed
    if args.period is not None:
        options["period_s"] = args.period
    if args.warmup is not None:
        if spec.name == "upfw":
            print("urbanpulse bridge emulate: upfw boards have no warm-up", file=sys.stderr)
            return EXIT_USAGE
        options["warmup_s"] = args.warmup
    if args.period is not None and spec.name == "mhz19b":
        print("urbanpulse bridge emulate: the MH-Z19B only answers polls (no --period)", file=sys.stderr)
        return EXIT_USAGE
    if args.script is not None:
        try:
            options[("source" if spec.name == "upfw" else "values")] = emulator_values(spec.name, args.script)
        except (OSError, ScriptError) as exc:
            print(f"urbanpulse bridge emulate: {exc}", file=sys.stderr)
            return EXIT_INPUT
    try:
        emulator = spec.new_emulator(**options)
    except (ValueError, BridgeError) as exc:
        print(f"urbanpulse bridge emulate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    port = emulator.start()
    try:
        print(port, flush=True)
        _serve(emulator, args.duration)
    finally:
        emulator.stop()
    return EXIT_OK


def _serve(emulator: PtyEmulator, duration: float | None) -> None:
    actions: dict[str, Callable[[], object]] = {
        "garbage": emulator.inject_garbage,
        "truncate": emulator.inject_truncated_frame,
        "checksum": emulator.inject_bad_checksum,
        "unplug": emulator.unplug,
        "replug": emulator.replug,
    }
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_stdin, name="bridge-emulate-stdin", daemon=True).start()
    deadline = None if duration is None else time.monotonic() + duration
    stdin_open = True
    idle = threading.Event()
    while deadline is None or time.monotonic() < deadline:
        wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
        if not stdin_open:
            idle.wait(wait)
            continue
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            continue
        if line is None:
            stdin_open = False
            continue
        command = line.strip().lower()
        if not command:
            continue
        if command == "quit":
            return
        action = actions.get(command)
        if action is None:
            print(f"unknown command {command!r}; commands: {FAULT_COMMANDS}", file=sys.stderr)
            continue
        action()
        print(f"{command}: done ({emulator.pty_path or 'unplugged'})", file=sys.stderr, flush=True)


# -- probe ----------------------------------------------------------------------------------


def _probe(args: argparse.Namespace) -> int:
    try:
        results = asyncio.run(probe(args.port, listen_s=args.listen))
    except SerialLinkError as exc:
        print(f"urbanpulse bridge probe: {exc}", file=sys.stderr)
        return EXIT_INPUT
    if not results:
        print(f"{args.port}: no known device answered")
        return EXIT_INPUT
    for r in results:
        sample = json.dumps(r.sample)
        print(f"{args.port}: {r.protocol} at {r.baudrate} baud ({r.title}); first reading: {sample}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(run_command(main))
