"""A redemption the ledger reported survives the process being killed, and nothing is half-written.

A child process redeems a stream of new coupons and writes ``REDEEMED <serial>`` only after
``redeem()`` returned redeemed=True. The parent kills it with SIGKILL at a random moment, several
times over on the same file, then checks the database against what the child reported.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from agent.contract.topics import Topics
from agent.coupons.ledger import Ledger
from agent.coupons.token import Coupon, Verification, VerifyResult

TOPICS = Topics("acme", "store-042", "till-1")

CHILD = textwrap.dedent(
    """
    import sys
    from agent.coupons.ledger import Ledger
    from agent.coupons.token import Coupon, Verification, VerifyResult, new_serial
    from agent.contract.topics import Topics

    ledger = Ledger(sys.argv[1], "till-1")
    sys.stdout.write("READY\\n")
    sys.stdout.flush()
    while True:
        coupon = Coupon(1, 7, 1001, new_serial(), 0, 4_000_000_000, 15, 0)
        redemption = ledger.redeem(Verification(VerifyResult.VALID, coupon), "scanner")
        if redemption.redeemed:
            sys.stdout.write(f"REDEEMED {coupon.serial_hex}\\n")
            sys.stdout.flush()
    """
)


def _reported(log: Path) -> list[str]:
    """Serials from complete report lines (a line cut by the kill was never fully reported)."""
    serials = []
    for line in log.read_text().splitlines(keepends=True):
        if line.startswith("REDEEMED ") and line.endswith("\n") and len(line) == len("REDEEMED ") + 33:
            serials.append(line[len("REDEEMED ") : -1])
    return serials


def _run_and_kill(script: Path, db_path: Path, log: Path, delay_s: float) -> list[str]:
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, str(script), str(db_path)], stdout=out)
    try:
        deadline = time.monotonic() + 60
        # Start the clock at the first redemption, so a slow start on a loaded machine cannot
        # use up the delay: the kill always lands somewhere in the stream.
        while "REDEEMED" not in log.read_text():
            assert child.poll() is None, "the child exited before it redeemed anything"
            assert time.monotonic() < deadline, "the child never redeemed anything"
            time.sleep(0.01)
        time.sleep(delay_s)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return _reported(log)


@pytest.mark.integration
def test_every_reported_redemption_survives_sigkill_with_exactly_one_outbox_message(tmp_path: Path) -> None:
    script = tmp_path / "redeem_forever.py"
    script.write_text(CHILD)
    db_path = tmp_path / "state" / "agent.db"
    rng = random.Random()
    all_reported: list[str] = []
    for round_no in range(4):
        delay_s = rng.uniform(0.0, 0.6)
        reported = _run_and_kill(script, db_path, tmp_path / f"round{round_no}.log", delay_s)
        assert reported, f"round {round_no}: nothing was redeemed in {delay_s:.2f} s"
        all_reported += reported

        with Ledger(db_path, "till-1") as ledger:
            db = ledger.db
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = Counter(row[0] for row in db.execute("SELECT serial FROM redemptions").fetchall())
            payloads = [json.loads(row[0]) for row in db.execute("SELECT payload FROM outbox").fetchall()]
            messages = Counter(p["serial"] for p in payloads if p["schema"] == "ledger.v1")
            reports = Counter(p["serial"] for p in payloads if p["schema"] == "store_redeemed.v1")
        assert set(stored.values()) == {1}
        missing = set(all_reported) - set(stored)
        assert not missing, f"round {round_no} (killed after {delay_s:.2f} s): lost {sorted(missing)}"
        # At most the one redemption in flight when the kill came is stored but unreported.
        assert len(stored) - len(all_reported) <= round_no + 1
        assert messages == stored, "each redemption has exactly one ledger message, and none is orphaned"
        assert reports == stored, "each redemption has exactly one store report, and none is orphaned"

    assert len(set(all_reported)) == len(all_reported)
    with Ledger(db_path, "till-1") as ledger:
        again = ledger.redeem(_verification(all_reported[-1]), "scanner")
    assert again.result is VerifyResult.ALREADY_REDEEMED


def _verification(serial_hex: str) -> Verification:
    coupon = Coupon(1, 7, 1001, bytes.fromhex(serial_hex), 0, 4_000_000_000, 15, 0)
    return Verification(VerifyResult.VALID, coupon)
