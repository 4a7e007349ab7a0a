"""Durable redemption speed beside the raw SQLite commit rate, measured in one run.

    python tests/benchmarks/bench_ledger.py [--n 2000] [--dir PATH] [--blocks 4]

Runs, in the same folder and alternating in blocks so drift on a noisy machine hits all alike:
N raw transactions of one INSERT into a table defined like ``redemptions`` (WAL, synchronous=FULL,
BEGIN IMMEDIATE ... COMMIT); N raw transactions that also insert the two outbox rows (the floor of what the
design asks for: a redemption row, its ledger message and its store report, same schema and
indexes); and N redemptions of new
coupons through Ledger.redeem. Prints rates, p50/p99 latency, the ratio ledger / raw (target
>= 0.8, p99 <= 50 ms), the ratio to the three-row floor, the cost of a repeated (already redeemed)
attempt, and the cost of verify_token per token.

Put --dir on the disk the device's state folder uses: fsync cost is what is being measured.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.contract.topics import Topics
from agent.coupons.ledger import Ledger
from agent.coupons.token import Coupon, Verification, VerifyResult, issue_token, new_serial, verify_token

NOW = time.time()
TOPICS = Topics("bench", "store-1", "till-1")
PAYLOAD = (
    '{"schema":"ledger.v1","msg_id":"0123456789abcdef0123456789abcdef","device":"till-1",'
    '"sent_at":1767225600.0,"serial":"SERIAL","campaign":1001,"offer":15,"store":0,"window_start":1767225600}'
)


def coupon() -> Coupon:
    return Coupon(1, 1, 1001, new_serial(), int(NOW) - 60, int(NOW) + 86_400, 15, 0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(action: Callable[[], object], times: list[float]) -> None:
    started = time.perf_counter()
    action()
    times.append(time.perf_counter() - started)


def open_raw(path: Path, like: Ledger, tables: tuple[str, ...]) -> sqlite3.Connection:
    """A plain connection with the ledger's settings and ``tables`` defined exactly as in its schema."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    marks = ",".join("?" * len(tables))
    schema = like.db.execute(
        f"SELECT sql FROM sqlite_master WHERE tbl_name IN ({marks}) AND sql IS NOT NULL ORDER BY type DESC",
        list(tables),
    )
    for (sql,) in schema.fetchall():  # tables before their indexes
        conn.execute(sql)
    return conn


def raw_commit(conn: sqlite3.Connection, with_outbox_row: bool) -> None:
    """One transaction: a redemption row (and an outbox row), no Python model, no checks."""
    serial, t = new_serial().hex(), time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO redemptions VALUES (?, 1001, 15, 0, 1, 'till-1', ?, 'scanner', ?)",
        [serial, t, int(t) // 900 * 900],
    )
    if with_outbox_row:  # the settlement record and the store report, as Ledger.redeem writes
        for topic in (TOPICS.ledger, TOPICS.store_redeemed):
            conn.execute(
                "INSERT INTO outbox (msg_id, topic, payload, qos, retain, created_at) VALUES (?, ?, ?, 1, 0, ?)",
                [uuid.uuid4().hex, topic, PAYLOAD.replace("SERIAL", serial), t],
            )
    conn.execute("COMMIT")


def report(name: str, times: list[float]) -> float:
    rate = len(times) / sum(times)
    print(
        f"{name:<28} {rate:8.0f} /s   p50 {percentile(times, 0.5) * 1000:6.2f} ms"
        f"   p99 {percentile(times, 0.99) * 1000:6.2f} ms   max {max(times) * 1000:6.2f} ms"
    )
    return rate


def bench_verify(count: int) -> None:
    key = Ed25519PrivateKey.generate()
    keys = {1: key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
    tokens = [issue_token(coupon(), key) for _ in range(count)]
    times: list[float] = []
    for token in tokens:
        timed(lambda token=token: verify_token(token, keys, 0, frozenset(), NOW), times)  # type: ignore[misc]
    print(
        f"{'verify_token':<28} {statistics.mean(times) * 1e6:8.1f} us/token (mean)"
        f"   p99 {percentile(times, 0.99) * 1e6:6.1f} us"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="redemptions and raw commits each")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the database files")
    parser.add_argument("--blocks", type=int, default=4, help="alternate the three runs in this many blocks")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir=args.dir))
    try:
        ledger = Ledger(folder / "ledger.db", "till-1")
        one = open_raw(folder / "raw1.db", ledger, ("redemptions",))
        two = open_raw(folder / "raw2.db", ledger, ("redemptions", "outbox"))
        verifications = [Verification(VerifyResult.VALID, coupon()) for _ in range(args.n)]
        for _ in range(20):  # warm the files and the code paths
            raw_commit(one, False)
            raw_commit(two, True)
            ledger.redeem(Verification(VerifyResult.VALID, coupon()), "scanner")

        times: dict[str, list[float]] = {"one": [], "two": [], "ledger": []}
        block = max(1, args.n // args.blocks)
        for start in range(0, args.n, block):
            size = min(block, args.n - start)
            for _ in range(size):
                timed(lambda: raw_commit(one, False), times["one"])
            for _ in range(size):
                timed(lambda: raw_commit(two, True), times["two"])
            for verification in verifications[start : start + size]:
                timed(lambda v=verification: ledger.redeem(v, "scanner"), times["ledger"])  # type: ignore[misc]
        repeat_times: list[float] = []
        for verification in verifications[: max(1, args.n // 4)]:
            timed(lambda v=verification: ledger.redeem(v, "scanner"), repeat_times)  # type: ignore[misc]

        print(f"{args.n} sequential transactions each in {folder} (WAL, synchronous=FULL)")
        raw_rate = report("raw: 1 INSERT + COMMIT", times["one"])
        floor_rate = report("raw: 3 INSERTs + COMMIT", times["two"])
        ledger_rate = report("Ledger.redeem (durable)", times["ledger"])
        report("Ledger.redeem (repeat)", repeat_times)
        p99_ms = percentile(times["ledger"], 0.99) * 1000
        ratio = ledger_rate / raw_rate
        print(
            f"ratio ledger / raw = {ratio:.2f} (target >= 0.80: {'ok' if ratio >= 0.8 else 'MISSED'});"
            f" ledger / 3-INSERT floor = {ledger_rate / floor_rate:.2f};"
            f" ledger p99 {p99_ms:.1f} ms (target <= 50: {'ok' if p99_ms <= 50 else 'MISSED'})"
        )
        one.close()
        two.close()
        ledger.close()
        bench_verify(min(args.n, 1000))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
