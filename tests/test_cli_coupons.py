"""The coupon demo path end to end: issue, scan a printed code, redeem once, refuse the second time."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "agent", *args)


def provision(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "provisioning.cli", *args)


@pytest.fixture
def issued(tmp_path: Path) -> tuple[Path, Path]:
    """An issuer key, a config that trusts it for store 12, and a batch of two coupons for store 12."""
    keys, batch = tmp_path / "keys", tmp_path / "batch"
    done = provision("coupons", "keygen", "--out", str(keys), "--key-id", "3")
    assert done.returncode == 0, done.stderr
    snippet = next(keys.glob("*.toml")).read_text()
    config = tmp_path / "agent.toml"
    config.write_text(f'[device]\nid = "till-1"\nstate_dir = "{tmp_path / "state"}"\n[coupons]\nstore = 12\n{snippet}')
    done = provision(
        "coupons", "issue", "--key", str(next(keys.glob("*.pem"))), "--key-id", "3", "--campaign", "7",
        "--offer", "2", "--store", "12", "--valid-days", "30", "--count", "2", "--out", str(batch),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return config, batch


@pytest.mark.integration
def test_issue_scan_redeem_and_refuse_the_second_time(issued: tuple[Path, Path]) -> None:
    config, batch = issued
    png = sorted(batch.glob("*.png"))[0]
    scanned = agent("scan", str(png), "--json")
    assert scanned.returncode == 0, scanned.stderr
    (result,) = json.loads(scanned.stdout)["results"]
    (token,) = result["codes"]
    assert token in batch.joinpath("tokens.txt").read_text().splitlines()

    first = agent("redeem", token, "--config", str(config), "--json")
    assert first.returncode == 0, first.stderr
    answer = json.loads(first.stdout)
    assert answer == {"result": "valid", "serial": png.stem, "campaign": 7, "offer": 2, "redeemed": True}

    second = agent("redeem", token, "--config", str(config), "--json")
    assert second.returncode == 1
    assert json.loads(second.stdout)["result"] == "already_redeemed"

    db = config.parent / "state" / "agent.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM redemptions").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM outbox WHERE kind = 'ledger'").fetchone() == (1,)

    waiting = agent("outbox", "--config", str(config), "--json")
    assert waiting.returncode == 0, waiting.stderr
    depth = json.loads(waiting.stdout)
    assert depth["by_kind"] == {"ledger": 1, "store_redeemed": 1}
    assert depth["held"] == 1  # the settlement record waits for the close of its window
    assert depth["last_error"] is None
    assert depth["agent"]["running"] is False  # no agent has run: nothing is sending

    said = agent("outbox", "--config", str(config))
    assert "NOT RUNNING: the agent has never run with this database; nothing is being sent" in said.stdout


@pytest.mark.integration
def test_a_forged_token_is_refused_in_words(issued: tuple[Path, Path]) -> None:
    config, batch = issued
    token = batch.joinpath("tokens.txt").read_text().splitlines()[0]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    done = agent("redeem", forged, "--config", str(config))
    assert done.returncode == 1
    first_line = done.stdout.splitlines()[0]
    assert first_line.startswith(("REFUSED (bad_signature)", "REFUSED (malformed)")), first_line


@pytest.mark.integration
def test_erase_removes_the_redemption_keeps_the_coupon_refused_and_is_audited(issued: tuple[Path, Path]) -> None:
    config, batch = issued
    token = batch.joinpath("tokens.txt").read_text().splitlines()[0]
    redeemed = json.loads(agent("redeem", token, "--config", str(config), "--json").stdout)
    erased = agent("erase", "--coupon", redeemed["serial"], "--config", str(config), "--actor", "staff:0042")
    assert erased.returncode == 0, erased.stderr
    assert "stays refused" in erased.stdout
    assert "2 undelivered" in erased.stdout
    with sqlite3.connect(config.parent / "state" / "agent.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM redemptions").fetchone() == (0,)
        assert conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'ledger' AND delivered_at IS NULL"
        ).fetchone() == (1,)
        assert conn.execute("SELECT actor, action, outcome FROM audit ORDER BY id").fetchall() == [
            ("cli", "redeem", "ok"),
            ("staff:0042", "erase", "ok"),
        ]
    again = agent("redeem", token, "--config", str(config), "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["result"] == "already_redeemed"


def test_erase_with_an_actor_that_is_not_a_role_is_a_usage_error(issued: tuple[Path, Path]) -> None:
    config, _batch = issued
    done = agent("erase", "--coupon", "ab" * 16, "--config", str(config), "--actor", "Jane Doe")
    assert done.returncode == 2
    assert "--actor: actor role 'Jane Doe' must be one of" in done.stderr


def test_scan_of_an_unreadable_image_exits_with_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not an image")
    done = agent("scan", str(bad), "--json")
    assert done.returncode == 2
    assert "photo.png" in done.stderr
