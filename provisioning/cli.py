"""Command line for operators: ``retail-provision AREA COMMAND``. ``main()`` returns the exit code.

Exit codes: 0 done, 1 refused (an output file already exists), 2 bad arguments or input files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provisioning import fleet_models
from provisioning.bridge import BridgePlan, bridge_text, central_acl_text, parse_central
from provisioning.broker import BROKER_USER, DEFAULT_BIND_ADDRESS, BrokerPlan, write_broker_config
from provisioning.coupons import (
    MAX_COUNT,
    CouponToolError,
    IssueRequest,
    default_valid_from,
    generate_issuer_key,
    issue_coupons,
    load_private_key,
    parse_time,
)
from provisioning.enrol import Device, ExternalIdentity, enroll
from provisioning.fleet import (
    FleetToolError,
    build_command,
    command_topic,
    generate_fleet_key,
    send_command,
    sign,
)
from provisioning.install import InstallError, InstallOptions, install
from provisioning.pki import CERT_MODE, DevCa, PkiError, write_atomic
from provisioning.rollout.cli import add_rollout_parser

logger = logging.getLogger("provisioning.cli")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def cmd_coupons_keygen(args: argparse.Namespace) -> int:
    files = generate_issuer_key(Path(args.out), args.key_id)
    print(f"private key (keep it offline, mode 0600): {files.private_key}")
    print(f"agent config snippet: {files.config_snippet}")
    print(files.config_snippet.read_text(encoding="utf-8"), end="")
    return EXIT_OK


def cmd_coupons_issue(args: argparse.Namespace) -> int:
    valid_from = parse_time(args.valid_from) if args.valid_from is not None else default_valid_from()
    request = IssueRequest(
        key_id=args.key_id,
        campaign=args.campaign,
        offer=args.offer,
        store=args.store,
        valid_from=valid_from,
        valid_days=args.valid_days,
        count=args.count,
    )
    private_key = load_private_key(Path(args.key))
    issued = issue_coupons(private_key, request, Path(args.out))
    store = f"store {request.store}" if request.store else "any store"
    print(
        f"issued {len(issued)} coupon(s) of campaign {request.campaign}, offer {request.offer}, {store}, "
        f"valid from {valid_from} until {request.expires} (unix s), into {args.out}"
    )
    return EXIT_OK


def cmd_pki_init(args: argparse.Namespace) -> int:
    ca = DevCa.create(Path(args.out), args.name)
    print(f"dev CA: {ca.cert_file} (private key {ca.key_file}, mode 0600: keep it offline)")
    return EXIT_OK


def cmd_pki_server(args: argparse.Namespace) -> int:
    issued = DevCa.load(Path(args.ca)).issue_server(Path(args.out), args.host)
    print(f"broker certificate for {', '.join(args.host)}: {issued.cert_file}, key {issued.key_file}")
    return EXIT_OK


def cmd_pki_device(args: argparse.Namespace) -> int:
    """An enrolment bundle: the device's certificate and key, the CA, and its [mqtt] config snippet."""
    out = Path(args.out)
    ca = DevCa.load(Path(args.ca))
    issued = ca.issue_client(out, args.device)
    ca_copy = out / "ca.crt"
    ca_copy.write_bytes(ca.cert_file.read_bytes())
    snippet = out / f"{args.device}.toml"
    snippet.write_text(
        f'[device]\nid = "{args.device}"\n\n[mqtt]\nhost = "{args.broker}"\nport = {args.port}\n'
        f'ca_file = "{args.install_dir}/ca.crt"\ncert_file = "{args.install_dir}/{issued.cert_file.name}"\n'
        f'key_file = "{args.install_dir}/{issued.key_file.name}"\n',
        encoding="utf-8",
    )
    print(f"enrolment bundle for {args.device} in {out}: {issued.cert_file.name}, {issued.key_file.name}, ca.crt")
    print(f"config snippet: {snippet} (files go to {args.install_dir} on the device)")
    return EXIT_OK


def cmd_pki_platform(args: argparse.Namespace) -> int:
    """A platform consumer's certificate (CN ``platform-<name>``) and the CA, to read a tenant."""
    out = Path(args.out)
    ca = DevCa.load(Path(args.ca))
    issued = ca.issue_platform(out, args.name)
    (out / "ca.crt").write_bytes(ca.cert_file.read_bytes())
    print(f"platform consumer {issued.name}: {issued.cert_file}, key {issued.key_file}, CA {out / 'ca.crt'}")
    print(f"give it read access with: retail-provision broker config ... --consumer {args.name}")
    return EXIT_OK


def cmd_pki_bridge(args: argparse.Namespace) -> int:
    """A store bridge's certificate (CN ``bridge-TENANT-STORE``) for the central broker."""
    issued = DevCa.load(Path(args.ca)).issue_bridge(Path(args.out), args.tenant, args.store)
    print(f"store bridge {issued.name}: {issued.cert_file}, key {issued.key_file}")
    return EXIT_OK


def cmd_device_enroll(args: argparse.Namespace) -> int:
    external = None
    if args.cert or args.key:
        if not (args.cert and args.key and args.ca_cert) or args.ca:
            raise ValueError("an existing certificate needs --cert, --key and --ca-cert (and no --ca)")
        external = ExternalIdentity(Path(args.ca_cert), Path(args.cert), Path(args.key))
    elif not args.ca:
        raise ValueError("give --ca DIR (development CA), or --cert, --key and --ca-cert (your own PKI)")
    host, port = parse_central(args.broker) if ":" in args.broker else (args.broker, args.port)
    bundle = enroll(
        Path(args.out),
        Device(args.tenant, args.store, args.device, host, port),
        ca=DevCa.load(Path(args.ca)) if args.ca else None,
        external=external,
        fleet_key=Path(args.fleet_key) if args.fleet_key else None,
        issuer_keys=[Path(p) for p in args.issuer_keys],
    )
    print(f"enrolment bundle for {args.device}: {bundle.folder}/ and {bundle.tar} ({', '.join(bundle.files)})")
    print(f"on the device: retail-provision install {bundle.tar.name} --wheel retail_edge_agent-*.whl")
    return EXIT_OK


def cmd_install(args: argparse.Namespace) -> int:
    options = InstallOptions(
        root=Path(args.root) if args.root else None,
        wheel=Path(args.wheel) if args.wheel else None,
        venv=not args.no_venv,
        replace_config=args.replace_config,
        console=args.console,
    )
    print(install(Path(args.bundle), options).describe())
    return EXIT_OK


def cmd_broker_bridge(args: argparse.Namespace) -> int:
    host, port = parse_central(args.central)
    plan = BridgePlan(
        args.tenant,
        args.store,
        host,
        port,
        Path(args.ca).resolve(),
        Path(args.cert).resolve(),
        Path(args.key).resolve(),
    )
    for path in (plan.ca_file, plan.cert_file, plan.key_file):
        if not path.is_file():
            raise ValueError(f"{path}: file not found")
    out = Path(args.out)
    write_atomic(out, bridge_text(plan).encode(), CERT_MODE)
    acl_out = Path(args.central_acl) if args.central_acl else out.with_name(f"{out.stem}.central.acl")
    write_atomic(acl_out, central_acl_text(args.tenant, [args.store], args.consumer).encode(), CERT_MODE)
    print(f"bridge section for the store broker: {out} (include it in its mosquitto.conf)")
    print(f"ACL lines for the central broker: {acl_out} (one store's bridge identity {plan.identity})")
    return EXIT_OK


def cmd_broker_config(args: argparse.Namespace) -> int:
    plan = BrokerPlan(args.tenant, args.store, tuple(args.fleet_group), consumers=tuple(args.consumer))
    server = Path(args.server_dir)
    bind = None if args.bind == "*" else args.bind
    files = write_broker_config(
        Path(args.out),
        plan,
        ca_file=Path(args.ca) / "ca.crt",
        cert_file=server / "server.crt",
        key_file=server / "server.key",
        port=args.port,
        bind_address=bind,
        persistence_dir=Path(args.persistence_dir),
        log_dest=args.log_dest,
        user=args.user,
    )
    print(f"mosquitto config {files.config_file} with ACL {files.acl_file}")
    print(f"listens on {bind or 'every interface'}, port {args.port}; runs as {args.user}")
    if files.key_group is None:
        print(
            f"note: {files.key_file} is 0600; before starting the broker: "
            f"chgrp {args.user} {files.key_file} && chmod 0640 {files.key_file}"
        )
    return EXIT_OK


def cmd_fleet_keygen(args: argparse.Namespace) -> int:
    files = generate_fleet_key(Path(args.out))
    print(f"fleet private key (keep it offline, mode 0600): {files.private_key}")
    print(f"agent config snippet: {files.config_snippet}")
    print(files.config_snippet.read_text(encoding="utf-8"), end="")
    return EXIT_OK


def _broker_address(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise FleetToolError(f"--broker must be HOST:PORT, got {text!r}")
    return host, int(port_text)


def _print_status(status: dict[str, Any]) -> None:
    details = status.get("details") or {}
    print(
        f"{status.get('device')}: {status.get('state')} v{status.get('version')}"
        + (f" step={status['step']}" if status.get("step") else "")
        + (f" reason={status['reason']}" if status.get("reason") else "")
        + "".join(f" {key}={value}" for key, value in details.items())
    )


def cmd_fleet_publish_model(args: argparse.Namespace) -> int:
    host, port = _broker_address(args.broker)
    model = Path(args.model)
    manifest = fleet_models.artifact_manifest(model, args.chunk_size)
    print(f"model {model.name}: sha256 {manifest.sha256}, {manifest.size} bytes, {manifest.chunks} chunks")
    fleet_models.publish_artifact(model, tenant=args.tenant, host=host, port=port, chunk_size=args.chunk_size)
    command, statuses = fleet_models.publish_model_job(
        manifest,
        key_path=Path(args.key),
        tenant=args.tenant,
        target=args.target,
        host=host,
        port=port,
        store=args.store,
        group=args.group,
        family=args.family,
        licence=args.licence,
        name=args.name,
        command_id=args.id,
        ttl_s=args.ttl,
        wait=args.wait,
        timeout_s=args.timeout,
        on_status=_print_status,
    )
    print(f"job {command.id} sent to {command.target}")
    if args.wait and (not statuses or statuses[-1].get("state") != "SUCCEEDED"):
        return EXIT_REFUSED
    return EXIT_OK


def cmd_fleet_clear_artifact(args: argparse.Namespace) -> int:
    host, port = _broker_address(args.broker)
    cleared = fleet_models.clear_artifact(args.sha256, tenant=args.tenant, host=host, port=port)
    print(f"{cleared} retained chunks of {args.sha256} cleared")
    return EXIT_OK


def cmd_fleet_send(args: argparse.Namespace) -> int:
    host, sep, port_text = args.broker.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise FleetToolError(f"--broker must be HOST:PORT, got {args.broker!r}")
    command = build_command(
        tenant=args.tenant,
        target=args.target,
        command_type=args.type,
        body=args.body,
        command_id=args.id,
        ttl_s=args.ttl,
    )
    topic = command_topic(command, store=args.store, group=args.group)
    payload = sign(command, Path(args.key))
    print(f"command {command.id} ({command.type}) for {command.target} on {topic}")
    statuses = send_command(
        payload,
        topic,
        host=host,
        port=int(port_text),
        wait_job=(command.tenant, command.id) if args.wait else None,
        timeout_s=args.timeout,
        on_status=lambda s: print(
            f"{s.get('device')}: {s.get('state')} v{s.get('version')}"
            + (f" step={s['step']}" if s.get("step") else "")
            + (f" reason={s['reason']}" if s.get("reason") else "")
        ),
    )
    if args.wait:
        final = statuses[-1].get("state") if statuses else None
        if final != "SUCCEEDED":
            print(f"job {command.id}: {final or 'no final status within --timeout'}", file=sys.stderr)
            return EXIT_REFUSED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-provision",
        description="Operator tools for retail devices: coupons, certificates, broker configuration.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    areas = parser.add_subparsers(dest="area", required=True, metavar="AREA")

    coupons = areas.add_parser("coupons", help="issuer keys and coupon batches")
    commands = coupons.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = commands.add_parser(
        "keygen",
        help="create an Ed25519 issuer key pair",
        description="Write issuer-N.pem (private key, mode 0600) and issuer-N.toml (the public key "
        "as an agent config snippet) into DIR. Never overwrites an existing key.",
    )
    keygen.add_argument("--out", required=True, metavar="DIR", help="folder for the key files")
    keygen.add_argument("--key-id", type=int, default=0, metavar="N", help="key id 0..255 (default 0)")
    keygen.set_defaults(func=cmd_coupons_keygen)

    issue = commands.add_parser(
        "issue",
        help="issue a batch of signed coupons with QR codes",
        description="Write DIR/tokens.txt (one token a line), DIR/manifest.csv and DIR/<serial>.png "
        "(QR, error correction M, 8 px per module). Coupons are valid from --valid-from (inclusive) "
        "for --valid-days days (the end is exclusive).",
    )
    issue.add_argument("--key", required=True, metavar="PRIVATE.pem", help="issuer private key from keygen")
    issue.add_argument("--key-id", required=True, type=int, metavar="N", help="the id devices know it by")
    issue.add_argument("--campaign", required=True, type=int, metavar="C", help="campaign number (u32)")
    issue.add_argument("--offer", required=True, type=int, metavar="O", help="offer number (u16)")
    issue.add_argument("--store", type=int, default=0, metavar="S", help="store number; 0 = any (default)")
    issue.add_argument(
        "--valid-from",
        metavar="TIME",
        help="unix seconds or ISO 8601 (UTC unless it names a zone); default now",
    )
    issue.add_argument("--valid-days", required=True, type=int, metavar="D", help="days of validity")
    issue.add_argument("--count", required=True, type=int, metavar="N", help=f"coupons, 1..{MAX_COUNT}")
    issue.add_argument("--out", required=True, metavar="DIR", help="folder for this batch")
    issue.set_defaults(func=cmd_coupons_issue)

    pki = areas.add_parser("pki", help="a development CA, broker and device certificates")
    pki_commands = pki.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = pki_commands.add_parser("init", help="create a dev CA (ECDSA P-256) in DIR")
    init.add_argument("--out", required=True, metavar="DIR")
    init.add_argument("--name", default="retail dev CA", help="the CA's common name")
    init.set_defaults(func=cmd_pki_init)
    server = pki_commands.add_parser("server", help="issue the broker's TLS certificate")
    server.add_argument("--ca", required=True, metavar="DIR", help="the CA folder from pki init")
    server.add_argument("--out", required=True, metavar="DIR")
    server.add_argument("--host", action="append", required=True, help="DNS name or IP of the broker (repeat)")
    server.set_defaults(func=cmd_pki_server)
    device = pki_commands.add_parser("device", help="an enrolment bundle for one device (CN = device id)")
    device.add_argument("--ca", required=True, metavar="DIR", help="the CA folder from pki init")
    device.add_argument("--device", required=True, help="device id, also its MQTT identity")
    device.add_argument("--broker", required=True, help="broker host name for the config snippet")
    device.add_argument("--port", type=int, default=8883)
    device.add_argument("--install-dir", default="/etc/retail-agent/tls", help="where the files go on the device")
    device.add_argument("--out", required=True, metavar="DIR")
    device.set_defaults(func=cmd_pki_device)
    platform = pki_commands.add_parser(
        "platform", help="a platform consumer's certificate (CN platform-NAME): reads the tenant's data"
    )
    platform.add_argument("--ca", required=True, metavar="DIR", help="the CA folder from pki init")
    platform.add_argument("--name", required=True, help="consumer name; the identity is platform-NAME")
    platform.add_argument("--out", required=True, metavar="DIR")
    platform.set_defaults(func=cmd_pki_platform)

    bridge_cert = pki_commands.add_parser(
        "bridge", help="a store bridge's certificate (CN bridge-TENANT-STORE) for the central broker"
    )
    bridge_cert.add_argument("--ca", required=True, metavar="DIR", help="the central CA folder")
    bridge_cert.add_argument("--tenant", required=True)
    bridge_cert.add_argument("--store", required=True)
    bridge_cert.add_argument("--out", required=True, metavar="DIR")
    bridge_cert.set_defaults(func=cmd_pki_bridge)

    device_area = areas.add_parser("device", help="enrolment bundles for devices")
    device_commands = device_area.add_subparsers(dest="command", required=True, metavar="COMMAND")
    enrol = device_commands.add_parser(
        "enroll",
        help="one device's bundle: key, certificate, CA, public keys and agent.toml (a folder and a .tar)",
        description="Write OUT/DEVICE/ and OUT/DEVICE.tar, every file mode 0600. With your own PKI, "
        "give the device's --cert, --key and --ca-cert instead of --ca.",
    )
    enrol.add_argument("--tenant", required=True)
    enrol.add_argument("--store", required=True)
    enrol.add_argument("--device", required=True, help="device id: certificate CN and MQTT identity")
    enrol.add_argument("--ca", metavar="DIR", help="development CA folder from pki init (issues the certificate)")
    enrol.add_argument("--cert", metavar="FILE", help="the device's certificate from your own PKI (CN = device id)")
    enrol.add_argument("--key", metavar="FILE", help="its private key (PEM, unencrypted)")
    enrol.add_argument("--ca-cert", metavar="FILE", help="the CA certificate of your own PKI")
    enrol.add_argument("--broker", default="broker", metavar="HOST[:PORT]", help="the store broker (default broker)")
    enrol.add_argument("--port", type=int, default=8883, help="broker port when --broker names none (8883)")
    enrol.add_argument("--fleet-key", metavar="PUB", help="the fleet's Ed25519 public key (PEM or base64)")
    enrol.add_argument(
        "--issuer-keys",
        action="append",
        default=[],
        metavar="FILE",
        help="coupon issuer keys: an issuer-N.toml from coupons keygen (repeat)",
    )
    enrol.add_argument("--out", required=True, metavar="DIR")
    enrol.set_defaults(func=cmd_device_enroll)

    inst = areas.add_parser(
        "install",
        help="install a device from its bundle: users, virtualenv, config, credentials, units, service",
        description="Idempotent: a second run changes nothing. Never touches the state directory.",
    )
    inst.add_argument("bundle", metavar="BUNDLE", help="bundle folder or .tar from device enroll")
    inst.add_argument("--root", metavar="DIR", help="install into DIR instead of this machine (commands are recorded)")
    inst.add_argument("--wheel", metavar="WHEEL", help="the agent wheel to install into /opt/retail-agent")
    inst.add_argument("--no-venv", action="store_true", help="with --root: record the virtualenv commands only")
    inst.add_argument("--replace-config", action="store_true", help="replace an agent.toml that was edited")
    inst.add_argument("--console", action="store_true", help="enable the staff console on tty1")
    inst.set_defaults(func=cmd_install, command="")

    broker = areas.add_parser("broker", help="Mosquitto configuration for a store")
    broker_commands = broker.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conf = broker_commands.add_parser("config", help="mosquitto.conf + ACL: each device writes only its prefix")
    conf.add_argument("--tenant", required=True)
    conf.add_argument("--store", required=True)
    conf.add_argument("--fleet-group", action="append", default=[], help="fleet groups devices may read")
    conf.add_argument("--ca", required=True, metavar="DIR", help="the CA folder from pki init")
    conf.add_argument("--server-dir", required=True, metavar="DIR", help="folder of server.crt/server.key")
    conf.add_argument("--port", type=int, default=8883)
    conf.add_argument(
        "--bind",
        default=DEFAULT_BIND_ADDRESS,
        metavar="ADDRESS",
        help=f"address to listen on (default {DEFAULT_BIND_ADDRESS}: this machine only); the store network's "
        "address for devices, '*' for every interface",
    )
    conf.add_argument(
        "--consumer",
        action="append",
        default=[],
        metavar="NAME",
        help="platform consumer platform-NAME that reads the tenant's topics (repeat)",
    )
    conf.add_argument("--user", default=BROKER_USER, help=f"account the broker runs as (default {BROKER_USER})")
    conf.add_argument("--persistence-dir", default="/var/lib/mosquitto", metavar="DIR", help="writable by --user")
    conf.add_argument("--log-dest", default="syslog", help="Mosquitto log_dest (default syslog)")
    conf.add_argument("--out", required=True, metavar="DIR", help="broker folder, reachable by --user")
    conf.set_defaults(func=cmd_broker_config)
    bridge = broker_commands.add_parser(
        "bridge", help="the store broker's bridge to the central broker, and the centre's ACL for it"
    )
    bridge.add_argument("--tenant", required=True)
    bridge.add_argument("--store", required=True)
    bridge.add_argument("--central", required=True, metavar="HOST:PORT", help="the central broker's TLS listener")
    bridge.add_argument("--ca", required=True, metavar="FILE", help="CA certificate of the central broker")
    bridge.add_argument("--cert", required=True, metavar="FILE", help="the store bridge's certificate (pki bridge)")
    bridge.add_argument("--key", required=True, metavar="FILE", help="its private key")
    bridge.add_argument("--consumer", action="append", default=[], metavar="NAME", help="platform consumers")
    bridge.add_argument("--out", required=True, metavar="FILE", help="the bridge section")
    bridge.add_argument("--central-acl", metavar="FILE", help="central ACL lines (default: OUT.central.acl)")
    bridge.set_defaults(func=cmd_broker_bridge)

    fleet = areas.add_parser("fleet", help="the fleet key and signed fleet commands")
    fleet_commands = fleet.add_subparsers(dest="command", required=True)
    fkeygen = fleet_commands.add_parser("keygen", help="a new fleet key pair: fleet.key (0600) and fleet.toml")
    fkeygen.add_argument("--out", required=True, metavar="DIR", help="folder for the key files")
    fkeygen.set_defaults(func=cmd_fleet_keygen)
    send = fleet_commands.add_parser("send", help="sign and publish one command; --wait for its job status")
    send.add_argument("--key", required=True, metavar="FILE", help="the fleet private key (fleet.key)")
    send.add_argument("--tenant", required=True)
    send.add_argument("--target", required=True, metavar="device:D|store:S|group:G")
    send.add_argument("--type", required=True, help="revoke, issuer_keys, erase, ping, config, fleet_key")
    send.add_argument("--body", default="{}", metavar="JSON", help="the command body (a JSON object)")
    send.add_argument("--broker", required=True, metavar="HOST:PORT")
    send.add_argument("--store", help="the store of a device target (its topic level)")
    send.add_argument("--group", help="the fleet group a store target is sent to")
    send.add_argument("--id", help="the command (and job) id; default TYPE-<random>")
    send.add_argument("--ttl", type=int, default=3600, metavar="S", help="seconds until it expires (default 3600)")
    send.add_argument("--wait", action="store_true", help="wait for the job's final status")
    send.add_argument("--timeout", type=float, default=30.0, metavar="S", help="how long --wait waits")
    send.set_defaults(func=cmd_fleet_send)
    pub = fleet_commands.add_parser(
        "publish-model", help="publish a model as retained chunks, then send the signed model job"
    )
    pub.add_argument("--model", required=True, metavar="FILE", help="the ONNX model file")
    pub.add_argument("--key", required=True, metavar="FILE", help="the fleet private key (fleet.key)")
    pub.add_argument("--tenant", required=True)
    pub.add_argument("--target", required=True, metavar="device:D|store:S|group:G")
    pub.add_argument("--broker", required=True, metavar="HOST:PORT")
    pub.add_argument("--store", help="the store of a device target (its topic level)")
    pub.add_argument("--group", help="the fleet group a store target is sent to")
    pub.add_argument("--family", choices=["ssd", "yolox"], help="needed for a model outside the models manifest")
    pub.add_argument("--licence", help="the model's licence; needed for a model outside the models manifest")
    pub.add_argument("--name", help="what devices call the model in birth and status (default model-<sha256>)")
    pub.add_argument(
        "--chunk-size", type=int, default=fleet_models.DEFAULT_CHUNK_BYTES, metavar="BYTES", help="chunk size"
    )
    pub.add_argument("--id", help="the job id; default model-<random>")
    pub.add_argument("--ttl", type=int, default=3600, metavar="S", help="seconds until the job expires")
    pub.add_argument("--wait", action="store_true", help="follow the job to its final status")
    pub.add_argument("--timeout", type=float, default=300.0, metavar="S", help="how long --wait waits")
    pub.set_defaults(func=cmd_fleet_publish_model)
    clear = fleet_commands.add_parser("clear-artifact", help="clear an artifact's retained chunks from the broker")
    clear.add_argument("sha256", help="the artifact's sha256")
    clear.add_argument("--tenant", required=True)
    clear.add_argument("--broker", required=True, metavar="HOST:PORT")
    clear.set_defaults(func=cmd_fleet_clear_artifact)
    add_rollout_parser(fleet_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    name = f"retail-provision {args.area} {args.command}".rstrip()
    try:
        return int(args.func(args))
    except (CouponToolError, PkiError, FleetToolError, ValueError) as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except InstallError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except FileExistsError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
