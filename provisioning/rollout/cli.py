"""``retail-provision fleet rollout start|resume|status|cancel|clear``: argument parsing and exit codes.

Exit codes: 0 the rollout ended with every job SUCCEEDED (``status``: read fine); 1 it was
aborted at its failure threshold, canceled, or ended with some jobs not succeeded; 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from provisioning.coupons import load_private_key
from provisioning.fleet import FleetToolError
from provisioning.fleet_models import DEFAULT_CHUNK_BYTES
from provisioning.rollout import state as state_file
from provisioning.rollout.jobs import JobSpec, cancel_publisher, command_publisher, config_job, model_job
from provisioning.rollout.link import BrokerLink, parse_broker
from provisioning.rollout.runner import (
    Runner,
    cancel,
    check_rollout_id,
    clear_statuses,
    job_topics,
    new_rollout,
    wait_for_statuses,
)
from provisioning.rollout.state import RolloutState
from provisioning.rollout.targets import DeviceRef, devices_from_births, read_device_list
from provisioning.rollout.waves import judge, parse_rate, parse_waves

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NOT_ALL, EXIT_USAGE = 0, 1, 2
DEFAULT_WAVES = "1,10%,50%,100%"


def _show(text: str) -> None:
    print(text, flush=True)


def _outcome(state: RolloutState) -> int:
    if state.status != "done":
        return EXIT_NOT_ALL
    return EXIT_OK if judge((e.state for e in state.sent()), 0.0).proceed else EXIT_NOT_ALL


def _job(args: argparse.Namespace) -> JobSpec:
    if args.model is not None:
        host, port = parse_broker(args.broker)
        return model_job(
            Path(args.model),
            tenant=args.tenant,
            host=host,
            port=port,
            family=args.family,
            licence=args.licence,
            name=args.name,
            chunk_size=args.chunk_size,
        )
    if args.config is not None:
        if args.version is None:
            raise FleetToolError("--config needs --version (the desired config's version, above the last one)")
        return config_job(Path(args.config), args.version)
    raise FleetToolError("say what to roll out: --config FILE --version N, or --model FILE")


def _store_targets(args: argparse.Namespace, link: BrokerLink) -> list[DeviceRef]:
    link.subscribe([f"retail/v1/{args.tenant}/{args.store}/+/state"])
    found = devices_from_births(link.births(), args.tenant, args.store)
    if not found:
        raise FleetToolError(f"--store {args.store}: the broker holds no birth of any device of that store")
    return found


def cmd_start(args: argparse.Namespace) -> int:
    path = Path(args.state)
    if path.exists():
        raise FileExistsError(f"--state {path} already exists: resume that rollout or choose another file")
    check_rollout_id(args.id)
    if args.config is not None:
        _job(args)  # a config job is checked before connecting; a model's is published only once targets are known
    marks = parse_waves(args.waves)
    rate = parse_rate(args.max_failure_rate)
    key = load_private_key(Path(args.key))
    host, port = parse_broker(args.broker)
    listed = read_device_list(Path(args.devices)) if args.devices is not None else None
    with BrokerLink(host, port) as link:
        targets = listed if listed is not None else _store_targets(args, link)
        job = _job(args)  # a model's chunks are published here, once, before any wave
        state = new_rollout(
            args.id,
            tenant=args.tenant,
            broker=args.broker,
            job=job,
            targets=targets,
            marks=marks,
            max_failure_rate=rate,
            wave_timeout_s=args.wave_timeout,
            soak_s=args.soak,
            ttl_s=args.ttl,
        )
        link.subscribe(job_topics(state))
        used = sorted(set(link.jobs()) & {entry.job_id for entry in state.entries()})
        if used:
            raise FleetToolError(
                f"--id {state.rollout_id}: the broker already holds statuses of job(s) {', '.join(used[:3])}"
                " (devices refuse a job id they have seen); choose another --id"
            )
        state_file.save(state, path)
        _show(
            f"rollout {state.rollout_id}: {len(targets)} device(s) in waves of "
            + ", ".join(str(len(wave)) for wave in state.waves)
            + f"; state in {path}"
        )
        publish = command_publisher(link, key, state.tenant, JobSpec(state.job_type, state.job_body), state.ttl_s)
        final = Runner(state, path, link, publish, _show).run()
    return _outcome(final)


def cmd_resume(args: argparse.Namespace) -> int:
    path = Path(args.state)
    state = state_file.load(path)
    if state.status != "running":
        _show(f"rollout {state.rollout_id} is {state.status}; nothing to resume")
        return _outcome(state)
    key = load_private_key(Path(args.key))
    host, port = parse_broker(state.broker)
    with BrokerLink(host, port) as link:
        publish = command_publisher(link, key, state.tenant, JobSpec(state.job_type, state.job_body), state.ttl_s)
        final = Runner(state, path, link, publish, _show).run()
    return _outcome(final)


def cmd_status(args: argparse.Namespace) -> int:
    path = Path(args.state)
    state = state_file.load(path)
    host, port = parse_broker(state.broker)
    with BrokerLink(host, port) as link:
        wait_for_statuses(state, path, link, args.wait, _show)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    path = Path(args.state)
    state = state_file.load(path)
    key = load_private_key(Path(args.key))
    host, port = parse_broker(state.broker)
    with BrokerLink(host, port) as link:
        cancel(state, path, link, cancel_publisher(link, key, state.tenant, state.ttl_s), _show)
        wait_for_statuses(state, path, link, args.wait, _show)
    return EXIT_NOT_ALL


def cmd_clear(args: argparse.Namespace) -> int:
    path = Path(args.state)
    state = state_file.load(path)
    host, port = parse_broker(state.broker)
    with BrokerLink(host, port) as link:
        clear_statuses(state, link, _show)
    return EXIT_OK


def add_rollout_parser(fleet_commands: Any) -> None:
    """Register ``rollout start|resume|status|cancel|clear`` under ``retail-provision fleet``."""
    rollout = fleet_commands.add_parser(
        "rollout",
        help="one job to many devices in waves, with an abort threshold; resumable",
        description="Roll a job out in waves (canary first), wait for each wave's jobs to end, stop "
        "when the failure rate passes --max-failure-rate. The state file is the tool's memory: "
        "resume, status and cancel read it.",
    )
    actions = rollout.add_subparsers(dest="rollout_command", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="plan and run a new rollout")
    start.add_argument("--state", required=True, metavar="FILE", help="the rollout's state file (must not exist)")
    start.add_argument("--key", required=True, metavar="FILE", help="the fleet private key (fleet.key)")
    start.add_argument("--tenant", required=True)
    start.add_argument("--broker", required=True, metavar="HOST:PORT")
    start.add_argument("--id", required=True, help="the rollout id (job ids are ID-N); 1-40 letters, digits, _.-")
    where = start.add_mutually_exclusive_group(required=True)
    where.add_argument("--devices", metavar="FILE", help="STORE/DEVICE a line, in rollout order (first: canary)")
    where.add_argument("--store", help="every device of this store with a retained birth on the broker")
    what = start.add_mutually_exclusive_group(required=True)
    what.add_argument("--config", metavar="FILE", help="a desired config (TOML) to roll out")
    what.add_argument("--model", metavar="FILE", help="an ONNX model to roll out (its chunks are published first)")
    start.add_argument("--version", type=int, metavar="N", help="the desired config's version")
    start.add_argument("--family", choices=["ssd", "yolox"], help="model: needed outside the models manifest")
    start.add_argument("--licence", help="model: its licence; needed outside the models manifest")
    start.add_argument("--name", help="model: what devices call it (default model-<sha256>)")
    start.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_BYTES, metavar="BYTES", help="model chunks")
    start.add_argument("--waves", default=DEFAULT_WAVES, help="cumulative wave marks (default 1,10%%,50%%,100%%)")
    start.add_argument("--max-failure-rate", default="10%", metavar="RATE", help="abort above it (default 10%%)")
    start.add_argument("--wave-timeout", type=float, default=600.0, metavar="S", help="wait per wave (default 600)")
    start.add_argument("--soak", type=float, default=0.0, metavar="S", help="pause between waves (default 0)")
    start.add_argument("--ttl", type=int, default=86_400, metavar="S", help="job lifetime in seconds (default 1 day)")
    start.set_defaults(func=cmd_start)
    resume = actions.add_parser("resume", help="continue a rollout from its state file")
    resume.add_argument("--state", required=True, metavar="FILE")
    resume.add_argument("--key", required=True, metavar="FILE", help="the fleet private key (fleet.key)")
    resume.set_defaults(func=cmd_resume)
    status = actions.add_parser("status", help="the status table, read from the broker")
    status.add_argument("--state", required=True, metavar="FILE")
    status.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait for unfinished jobs (default 0)")
    status.set_defaults(func=cmd_status)
    stop = actions.add_parser("cancel", help="send no further wave; cancel the jobs not yet ended")
    stop.add_argument("--state", required=True, metavar="FILE")
    stop.add_argument("--key", required=True, metavar="FILE", help="the fleet private key (fleet.key)")
    stop.add_argument("--wait", type=float, default=10.0, metavar="S", help="wait for the cancellations (default 10)")
    stop.set_defaults(func=cmd_cancel)
    clear = actions.add_parser(
        "clear",
        help="remove the rollout's retained job statuses from the broker (once it has ended)",
        description="Publish an empty retained message on every job status topic of the rollout (and of "
        "the cancels it sent), so the broker stops keeping them. status reads nothing afterwards; the "
        "devices still refuse the rollout's job ids as replays, so do not reuse its --id.",
    )
    clear.add_argument("--state", required=True, metavar="FILE")
    clear.set_defaults(func=cmd_clear)
