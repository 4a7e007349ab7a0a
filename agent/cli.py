"""Command line: ``retail-agent COMMAND``. ``main()`` returns the process exit code."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from agent import __version__
from agent.config import AgentConfig, ConfigError, load_config, user_state_dir
from agent.runtime.logs import configure_logging

logger = logging.getLogger("agent.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad arguments or unusable input; reported in one line with exit code 2."""


class ArgumentsError(Exception):
    """The command line does not parse; ``parser`` is the (sub)parser that refused it."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """Raises instead of exiting, so ``main()`` reports a bad command line like any other error."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(self, message)


STDIN = "-"


def token_text(value: str) -> str:
    """The coupon text argument: ``-`` reads it from standard input (one token, blanks stripped)."""
    if value != STDIN:
        return value
    text = sys.stdin.read().strip()
    if not text:
        raise argparse.ArgumentTypeError("no token text on standard input")
    return text


def _load(path: str | None) -> AgentConfig:
    return load_config(Path(path)) if path else AgentConfig()


# --- commands -------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(Path(args.file))
    lines, zones = len(config.camera.lines), len(config.camera.zones)
    print(f"{args.file}: ok ({lines} line(s), {zones} zone(s), model {config.detector.model})")
    return EXIT_OK


def cmd_count(args: argparse.Namespace) -> int:
    from agent.geometry_args import with_family, with_rules
    from agent.vision.count import count_file

    config = with_family(with_rules(_load(args.config), args.line, args.zone), args.family)
    report = count_file(config, Path(args.video), args.model)
    print(json.dumps(report.to_json()) if args.json else report.describe())
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from agent.evaluation import DEFAULT_TOLERANCE, evaluate_file
    from agent.geometry_args import with_family

    config = with_family(_load(args.config), args.family)
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    result = evaluate_file(config, Path(args.truth), Path(args.video), args.model, tolerance, args.frames)
    print(json.dumps(result.to_json()) if args.json else result.describe())
    return EXIT_OK


def _tolerance(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of frames (0 or more), got {text!r}")
    return int(text)


def _frame_range(text: str) -> Any:
    from agent.evaluation import FrameRange

    try:
        return FrameRange.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    return run_demo(
        state_dir=Path(args.state_dir) if args.state_dir else user_state_dir(),
        video=Path(args.video) if args.video else None,
        fast=args.fast,
        model=args.model,
        report=print,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from agent.runtime.memory import limit_malloc_arenas

    limit_malloc_arenas()  # before the libraries, the model and the threads allocate
    from agent.runtime.run import run_agent

    config = load_config(Path(args.config))
    configure_logging(config.logging.level)
    return run_agent(config, threading.Event(), config_path=Path(args.config))


def cmd_status(args: argparse.Namespace) -> int:
    from agent.runtime.report import read_report

    config = _load(args.config)
    report = read_report(Path(args.db) if args.db else config.database_path, config.runtime.status_interval_s)
    print(json.dumps(report.to_json()) if args.json else report.describe())
    return EXIT_OK if report.running else EXIT_FAILURE


def cmd_models(args: argparse.Namespace) -> int:
    from agent.vision.fetch import fetch_model
    from agent.vision.models import load_manifest

    if args.models_command == "list":
        for name, entry in load_manifest().items():
            print(f"{name}: {entry.family}, {entry.licence}, {entry.source}")
        return EXIT_OK
    state_dir = Path(args.state_dir) if args.state_dir else user_state_dir()
    path = fetch_model(args.name, state_dir / "models", url=args.url)
    print(f"{args.name}: verified and saved to {path}")
    return EXIT_OK


def _desk(config: AgentConfig, db: str | None) -> Any:
    from agent.coupons.desk import CouponDesk

    return CouponDesk.from_config(config, Path(db) if db else None)


def _actor(text: str) -> Any:
    from agent.storage.audit import Actor

    try:
        return Actor.parse(text)
    except ValueError as exc:
        raise UsageError(f"--actor: {exc}") from None


def cmd_redeem(args: argparse.Namespace) -> int:
    config = _load(args.config)
    actor = _actor(args.actor)
    with _desk(config, args.db) as desk:
        outcome = desk.redeem(args.text, actor, "cli")
    print(json.dumps(outcome.to_json()) if args.json else outcome.describe())
    return EXIT_OK if outcome.redeemed else EXIT_FAILURE


def cmd_erase(args: argparse.Namespace) -> int:
    config = _load(args.config)
    actor = _actor(args.actor)
    with _desk(config, args.db) as desk:
        try:
            erasure = desk.erase(args.coupon, actor)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    print(erasure.describe(args.coupon.lower()))
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    """Each file gets an entry: its codes and time, or the reason it was not read; exit 2 if any was not."""
    from agent.coupons.scanner import scan_files

    results = scan_files([Path(name) for name in args.images])
    if args.json:
        print(json.dumps({"results": results}))
    else:
        for item in results:
            if "codes" in item:
                print(f"{item['file']}: {', '.join(item['codes']) or 'no code'} ({item['ms']} ms)")
    return EXIT_USAGE if any("error" in item for item in results) else EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    from agent.runtime.outbox_report import describe_outbox_report, read_outbox_report

    config = _load(args.config)
    path = Path(args.db) if args.db else config.database_path
    report = read_outbox_report(path, config.sync.outbox_max_rows, config.runtime.status_interval_s)
    print(json.dumps(report) if args.json else describe_outbox_report(report))
    return EXIT_OK


def cmd_view(args: argparse.Namespace) -> int:
    from agent.vision.view import make_view

    config = load_config(Path(args.config))
    result = make_view(
        config,
        Path(args.out),
        actor=_actor(args.actor),
        model=args.model,
        skip=args.skip,
        database=Path(args.db) if args.db else None,
    )
    print(result.describe())
    return EXIT_OK


def _database(config: AgentConfig, db: str | None) -> Path:
    path = Path(db) if db else config.database_path
    if not path.is_file():
        raise UsageError(f"no database at {path}: start the agent with this config first (or name it with --db)")
    return path


def cmd_console(args: argparse.Namespace) -> int:
    from agent.console.app import run_console

    config = _load(args.config)
    run_console(_database(config, args.db), config)
    return EXIT_OK


def cmd_staff(args: argparse.Namespace) -> int:
    from agent.storage.database import open_database
    from agent.storage.staff import add_staff

    config = _load(args.config)
    path = _database(config, args.db)
    pin = sys.stdin.readline().strip()
    db = open_database(path)
    try:
        add_staff(db, args.id, args.role, pin, _actor(args.actor))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    finally:
        db.close()
    print(f"{args.role} {args.id} added; they sign in to the console with their PIN")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retail-agent", description="The in-store agent for retail devices.")
    parser.add_argument("--version", action="version", version=f"retail-agent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the agent service with a config file")
    p.add_argument("--config", required=True, help="TOML config file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="count people on the bundled sample clip into a local database")
    p.add_argument("--state-dir", help="where the demo database goes (default: ~/.local/state/retail-agent)")
    p.add_argument("--video", help="a video file to use instead of the sample clip")
    p.add_argument("--fast", action="store_true", help="process as fast as possible instead of at 10 fps")
    p.add_argument("--model", help="model name from models/manifest.toml, or an ONNX file")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("count", help="count line crossings and zone occupancy in a video file")
    p.add_argument("video", help="video file")
    p.add_argument("--line", action="append", default=[], metavar="NAME=x1,y1,x2,y2", help="a directed line")
    p.add_argument("--zone", action="append", default=[], metavar="NAME=x1,y1;x2,y2;...", help="a polygon zone")
    p.add_argument("--config", help="TOML config for detector, tracker and counting settings")
    p.add_argument("--model", help="model name from models/manifest.toml, or an ONNX file")
    p.add_argument("--family", choices=["ssd", "yolox"], help="decoder for an ONNX file outside the manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("eval", help="score counts on a video against a truth file")
    p.add_argument("video", help="video file")
    p.add_argument("--truth", required=True, help="truth TOML: lines with their crossings, optional zones")
    p.add_argument(
        "--tolerance",
        type=_tolerance,
        help="frames a counted crossing may be from a true one to match it (default 10: 1 s at 10 fps)",
    )
    p.add_argument(
        "--frames",
        type=_frame_range,
        action="append",
        default=[],
        metavar="FIRST:LAST",
        help="also report frames FIRST to LAST (both included) on their own; repeatable",
    )
    p.add_argument("--config", help="TOML config for detector, tracker and counting settings")
    p.add_argument("--model", help="model name from models/manifest.toml, or an ONNX file")
    p.add_argument("--family", choices=["ssd", "yolox"], help="decoder for an ONNX file outside the manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("scan", help="decode coupon QR codes in image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "redeem",
        help="verify a coupon token and redeem it once (exit 0 only when redeemed)",
        epilog='A text that starts with "-" goes after "--": retail-agent redeem --json -- "-X...". '
        'With "-" as the text it is read from standard input: ... | retail-agent redeem --json -. '
        "With --json, a bad command line or input is reported as one JSON object with an error field "
        "(exit 2).",
    )
    p.add_argument("text", type=token_text, help='the token text, "C1:..."; "-" reads it from standard input')
    p.add_argument("--config", help="TOML config with the [coupons] section")
    p.add_argument("--db", help="database file (default: the config's state directory)")
    p.add_argument("--actor", default="cli", help="who redeems, as ROLE or ROLE:ID (for the audit log)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_redeem)

    p = sub.add_parser("erase", help="erase a coupon's local records (right to erasure); it stays refused; audited")
    p.add_argument("--coupon", required=True, metavar="SERIAL", help="the serial, 32 hex digits")
    p.add_argument(
        "--actor", default="cli", help="who asks, as ROLE or ROLE:ID, e.g. manager or staff:0042 (for the audit log)"
    )
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--db", help="database file (default: the config's state directory)")
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser(
        "outbox", help="what waits to be sent: depth by kind, oldest age, last error, the agent's broker connection"
    )
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--db", help="database file (default: the config's state directory)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_outbox)

    p = sub.add_parser("status", help="what the running agent is doing: components, rate, model, sync")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--db", help="database file (default: the config's state directory)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "view",
        help="one camera frame with the configured lines, in/out arrows, zones and detected people, as a PNG",
        description="For checking a mounting. The image stays on this device (mode 0600); writing it is audited.",
    )
    p.add_argument("--config", default="/etc/retail-agent/agent.toml", help="TOML config (default: the installed one)")
    p.add_argument("--out", required=True, metavar="PNG", help="image file to write")
    p.add_argument("--skip", type=int, default=0, metavar="N", help="for a video file: show frame N (default 0)")
    p.add_argument("--model", help="model name from models/manifest.toml, or an ONNX file")
    p.add_argument("--db", help="database for the audit record (default: the config's state directory)")
    p.add_argument("--actor", default="cli", help="who looks, as ROLE or ROLE:ID (for the audit log)")
    p.set_defaults(func=cmd_view)

    p = sub.add_parser("console", help="the staff console: sign in, redeem, today's figures, device, manager tools")
    p.add_argument("--config", help="the agent's TOML config (coupon keys, display threshold, console settings)")
    p.add_argument("--db", help="database file (default: the config's state directory)")
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("staff", help="manage who may sign in to the staff console")
    ssub = p.add_subparsers(dest="staff_command", required=True, metavar="ACTION")
    a = ssub.add_parser("add", help="add a staff member or manager; the PIN (4-12 digits) is read from standard input")
    a.add_argument("--id", required=True, help="staff id: 1-64 letters, digits, '_', '.', '-' (no names)")
    a.add_argument("--role", required=True, choices=["staff", "manager"])
    a.add_argument("--actor", default="cli", help="who adds them, as ROLE or ROLE:ID (for the audit log)")
    a.add_argument("--config", help="TOML config file")
    a.add_argument("--db", help="database file (default: the config's state directory)")
    p.set_defaults(func=cmd_staff)

    p = sub.add_parser("check-config", help="validate a config file and report every bad key")
    p.add_argument("file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("models", help="list or fetch detector models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="models described by the manifest")
    f = msub.add_parser("fetch", help="download a model and verify its size and sha256")
    f.add_argument("name", help="model name, e.g. yolox-nano")
    f.add_argument("--url", help="download from this address instead of the manifest's")
    f.add_argument("--state-dir", help="state directory; the model goes to STATE_DIR/models")
    p.set_defaults(func=cmd_models)
    return parser


def _wants_json(argv: Sequence[str]) -> bool:
    """Whether a command line that did not parse asked for JSON output (options before ``--``)."""
    options = list(argv)[: list(argv).index("--")] if "--" in argv else list(argv)
    return "--json" in options


def _report(command: str, message: str, as_json: bool) -> None:
    print(f"retail-agent {command}: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message}))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every expected error is one message on stderr (and one JSON object on
    stdout with ``--json``), never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except ArgumentsError as exc:
        message = str(exc)
        if exc.parser.prog.endswith(" redeem") and "required: text" in message:
            message += ' (a token text that starts with "-" goes after "--")'
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {message}", file=sys.stderr)
        if _wants_json(argv):
            print(json.dumps({"error": message}))
        return EXIT_USAGE
    as_json = bool(getattr(args, "json", False))
    configure_logging("DEBUG" if args.verbose else "WARNING" if as_json else "INFO")
    from agent.geometry_args import GeometryArgError
    from agent.storage.database import StorageError
    from agent.vision.models import ModelError
    from agent.vision.source import SourceError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error in {exc}", file=sys.stderr)
        if as_json:
            print(json.dumps({"error": f"config error in {exc}"}))
        return EXIT_USAGE
    except (UsageError, GeometryArgError, SourceError, ModelError) as exc:
        _report(args.command, str(exc), as_json)
        return EXIT_USAGE
    except StorageError as exc:
        _report(args.command, str(exc), as_json)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
