"""``retail-agent staff add`` and ``retail-agent console``: PIN from standard input, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agent.storage.database import open_database, open_readonly
from agent.storage.staff import StaffRole, sign_in


def agent(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_staff_add_reads_the_pin_from_stdin_and_the_member_can_sign_in(tmp_path: Path) -> None:
    db_path = tmp_path / "agent.db"
    open_database(db_path).close()
    done = agent("staff", "add", "--id", "m1", "--role", "manager", "--db", str(db_path), stdin="2468\n")
    assert done.returncode == 0, done.stderr
    assert "manager m1 added" in done.stdout
    db = open_database(db_path)
    try:
        assert sign_in(db, "m1", "2468").role is StaffRole.MANAGER
    finally:
        db.close()


def test_staff_add_refuses_a_bad_pin_in_one_line(tmp_path: Path) -> None:
    db_path = tmp_path / "agent.db"
    open_database(db_path).close()
    done = agent("staff", "add", "--id", "m1", "--role", "manager", "--db", str(db_path), stdin="12\n")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "retail-agent staff: a PIN must be 4 to 12 digits"
    db = open_readonly(db_path)
    try:
        assert db.execute("SELECT COUNT(*) FROM staff").fetchone()[0] == 0
    finally:
        db.close()


def test_console_without_a_database_says_where_it_looked(tmp_path: Path) -> None:
    done = agent("console", "--db", str(tmp_path / "missing.db"))
    assert done.returncode == 2
    assert "no database at" in done.stderr and "Traceback" not in done.stderr
