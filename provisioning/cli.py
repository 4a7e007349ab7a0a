"""Command line for operators: ``retail-provision AREA COMMAND``. ``main()`` returns the exit code.

Exit codes: 0 done, 1 refused (an output file already exists), 2 bad arguments or input files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retail-provision", description="Operator tools for retail devices: coupon issuing."
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")
    name = f"retail-provision {args.area} {args.command}"
    try:
        return int(args.func(args))
    except CouponToolError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_USAGE
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
