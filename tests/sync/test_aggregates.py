"""Closing windows: fixed cells, missing is not zero, each cell released once, coupon counts noised."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from agent.config import SyncConfig
from agent.contract.payloads import DWELL_BINS
from agent.contract.topics import Topics
from agent.counting.tallies import LineMinute, ZoneMinute
from agent.storage.buckets import write_minutes
from agent.storage.database import open_database, transaction
from agent.storage.events import Event, EventKind, record_events
from agent.sync import aggregates
from agent.sync.aggregates import close_windows
from agent.sync.dp import sample_discrete_laplace

DAY0 = 1_767_225_600  # 2026-01-01 00:00 UTC
W = 900
GRACE = 300
DEVICE = "till-1"
TOPICS = Topics("acme", "store-042", DEVICE)
LINES = ("entrance", "exit")
ZONES = ("queue",)
CONFIG = SyncConfig()


@pytest.fixture
def db() -> Iterator[Database]:
    database = open_database(":memory:")
    yield database
    database.close()


def lines(minute: int, entrance: tuple[int, int] = (0, 0), exit_: tuple[int, int] = (0, 0)) -> list[LineMinute]:
    return [LineMinute(minute, "entrance", *entrance), LineMinute(minute, "exit", *exit_)]


def zone(
    minute: int, frames: int = 600, mean: float = 0.0, peak: int = 0, exits: int = 0, zone_name: str = "queue"
) -> ZoneMinute:
    return ZoneMinute(minute, zone_name, frames, mean, peak, exits, exits, exits, 0.0, 0.0)


def seen(db: Database, minute: int, device: str = DEVICE, **line_counts: tuple[int, int]) -> None:
    """A minute with processed frames (and the given crossings) on the configured lines and zone."""
    write_minutes(
        db,
        device,
        "cam0",
        [*lines(minute, line_counts.get("entrance", (0, 0)), line_counts.get("exit_", (0, 0))), zone(minute)],
        now=minute + 60,
    )


def redeem(db: Database, at: float, campaign: int = 7, offer: int = 2, device: str = DEVICE) -> None:
    serial = random.Random(at).getrandbits(128).to_bytes(16, "big").hex()
    with transaction(db):
        db.execute(
            "INSERT INTO redemptions (serial, campaign, offer, store, key_id, device, redeemed_at, source,"
            " window_start) VALUES (?, ?, ?, 1, 1, ?, ?, 'scanner', ?)",
            [serial, campaign, offer, device, at, int(at) // 900 * 900],
        )


def close(db: Database, now: float, config: SyncConfig = CONFIG, **kwargs: Any) -> int:
    return close_windows(db, DEVICE, TOPICS, now, config, LINES, ZONES, **kwargs)


def messages(db: Database, schema: str) -> list[dict[str, Any]]:
    rows = db.execute("SELECT kind, route, payload FROM outbox ORDER BY id").fetchall()
    found = [json.loads(payload) for _kind, _route, payload in rows if json.loads(payload)["schema"] == schema]
    topic = TOPICS.traffic if schema == "traffic.v1" else TOPICS.coupons
    assert all(TOPICS.topic(k, r) == topic for k, r, p in rows if json.loads(p)["schema"] == schema)
    return found


def outbox_rows(db: Database) -> list[tuple[Any, ...]]:
    return db.execute("SELECT msg_id, kind, payload, created_at FROM outbox ORDER BY id").fetchall()


# Traffic


def test_a_closed_window_becomes_one_message_with_every_configured_line_and_zone(db: Database) -> None:
    write_minutes(
        db,
        DEVICE,
        "cam0",
        [
            *lines(DAY0, entrance=(3, 1)),
            zone(DAY0, frames=600, mean=1.0, peak=2, exits=1),
            *lines(DAY0 + 300, entrance=(2, 0)),
            zone(DAY0 + 300, frames=200, mean=3.0, peak=5, exits=2),
        ],
    )
    record_events(db, DEVICE, "cam0", [Event(DAY0 + 30, EventKind.ZONE_EXIT, "queue", 45.0)])
    assert close(db, DAY0 + W + GRACE) == 1
    [report] = messages(db, "traffic.v1")
    assert report["window_start"] == DAY0
    assert report["window_minutes"] == 15
    assert report["device"] == DEVICE
    assert report["minutes_seen"] == 2
    assert report["frames_seen"] == 800
    assert report["lines"] == {"entrance": {"in": 5, "out": 1}, "exit": {"in": 0, "out": 0}}
    queue = report["zones"]["queue"]
    assert queue["mean_occupancy"] == pytest.approx((600 * 1.0 + 200 * 3.0) / 800)
    assert queue["peak_occupancy"] == 5
    assert queue["visits"] == 3
    assert queue["dwell_bins"] == {**{label: 0 for label, _ in DWELL_BINS}, "30s_1m": 1}


def test_segments_of_one_minute_from_a_restart_add_up_in_the_window(db: Database) -> None:
    before = [*lines(DAY0, entrance=(3, 1)), zone(DAY0, frames=200, mean=1.0, peak=2, exits=1)]
    after = [*lines(DAY0, entrance=(2, 0)), zone(DAY0, frames=400, mean=4.0, peak=6, exits=2)]
    write_minutes(db, DEVICE, "cam0", before, segment="live:1:aa")
    write_minutes(db, DEVICE, "cam0", after, segment="live:2:bb")  # the agent restarted within the minute
    assert close(db, DAY0 + W + GRACE) == 1
    [report] = messages(db, "traffic.v1")
    assert (report["minutes_seen"], report["frames_seen"]) == (1, 600)
    assert report["lines"]["entrance"] == {"in": 5, "out": 1}
    queue = report["zones"]["queue"]
    assert queue["mean_occupancy"] == pytest.approx((200 * 1.0 + 400 * 4.0) / 600)
    assert (queue["peak_occupancy"], queue["visits"]) == (6, 3)


def test_closing_again_queues_nothing_and_leaves_the_outbox_as_it_was(db: Database) -> None:
    for minute in (DAY0, DAY0 + 60, DAY0 + W, DAY0 + 3 * W):
        seen(db, minute, entrance=(1, 0))
    redeem(db, DAY0 - 86_400)
    first = close(db, DAY0 + 4 * W + GRACE)
    before = outbox_rows(db)
    assert first == len(before) > 0
    assert close(db, DAY0 + 4 * W + GRACE) == 0
    assert close(db, DAY0 + 4 * W + GRACE + 60) == 0
    assert outbox_rows(db) == before


def test_a_window_with_frames_but_no_crossings_reports_zero_for_every_line(db: Database) -> None:
    seen(db, DAY0 + 120)
    close(db, DAY0 + W + GRACE)
    [report] = messages(db, "traffic.v1")
    assert report["lines"] == {name: {"in": 0, "out": 0} for name in LINES}
    assert report["zones"]["queue"]["visits"] == 0
    assert report["zones"]["queue"]["dwell_bins"] == {label: 0 for label, _ in DWELL_BINS}


def test_a_window_without_processed_frames_is_not_reported(db: Database) -> None:
    seen(db, DAY0, entrance=(1, 1))
    seen(db, DAY0 + 2 * W, entrance=(2, 2))
    close(db, DAY0 + 3 * W + GRACE)
    assert [m["window_start"] for m in messages(db, "traffic.v1")] == [DAY0, DAY0 + 2 * W]


def test_a_configured_line_appears_even_when_only_another_has_data(db: Database) -> None:
    write_minutes(db, DEVICE, "cam0", [LineMinute(DAY0, "entrance", 4, 0)])
    close(db, DAY0 + W + GRACE)
    [report] = messages(db, "traffic.v1")
    assert report["lines"]["exit"] == {"in": 0, "out": 0}
    assert report["zones"]["queue"]["mean_occupancy"] == 0.0
    assert report["frames_seen"] is None  # no zone bucket: frames were not counted


def test_other_devices_and_unconfigured_names_are_not_reported(db: Database) -> None:
    seen(db, DAY0, device="till-2", entrance=(9, 9))
    write_minutes(db, DEVICE, "cam0", [LineMinute(DAY0 + W, "old-door", 5, 5)])
    assert close(db, DAY0 + 2 * W + GRACE) == 0
    assert messages(db, "traffic.v1") == []


def test_a_window_closes_only_after_its_grace_and_late_minutes_count(db: Database) -> None:
    seen(db, DAY0, entrance=(1, 0))
    assert close(db, DAY0 + W + GRACE - 1) == 0  # ended, but still within the grace period
    seen(db, DAY0 + W - 60, entrance=(4, 0))  # the window's last minute, written late
    assert close(db, DAY0 + W + GRACE) == 1
    [report] = messages(db, "traffic.v1")
    assert report["lines"]["entrance"]["in"] == 5
    assert report["minutes_seen"] == 2


def test_data_arriving_after_release_is_not_released_again(db: Database) -> None:
    seen(db, DAY0, entrance=(1, 0))
    close(db, DAY0 + W + GRACE)
    traffic_cells = "SELECT * FROM released_cells WHERE kind = 'traffic' ORDER BY cell"
    cells = db.execute(traffic_cells).fetchall()
    seen(db, DAY0 + 60, entrance=(7, 0))
    assert close(db, DAY0 + 2 * W + GRACE) == 0
    assert db.execute(traffic_cells).fetchall() == cells
    assert len(messages(db, "traffic.v1")) == 1


def test_the_dwell_distribution_uses_fixed_bins_that_cover_every_visit(db: Database) -> None:
    seen(db, DAY0)
    dwells = [0.0, 9.9, 10.0, 29.9, 30.0, 59.9, 60.0, 119.0, 120.0, 299.0, 300.0, 599.0, 600.0, 5400.0]
    events = [Event(DAY0 + i, EventKind.ZONE_EXIT, "queue", d) for i, d in enumerate(dwells)]
    events.append(Event(DAY0 + W + 1, EventKind.ZONE_EXIT, "queue", 5.0))  # the next window's
    record_events(db, DEVICE, "cam0", events)
    close(db, DAY0 + W + GRACE)
    [report] = messages(db, "traffic.v1")
    bins = report["zones"]["queue"]["dwell_bins"]
    assert list(bins) == [label for label, _ in DWELL_BINS]
    assert bins == {"lt_10s": 2, "10s_30s": 2, "30s_1m": 2, "1m_2m": 2, "2m_5m": 2, "5m_10m": 2, "ge_10m": 2}


# Released once, atomically


def test_a_cell_is_never_released_twice_even_after_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    first = open_database(path)
    seen(first, DAY0, entrance=(2, 1))
    assert close(first, DAY0 + W + GRACE) == 1
    first.close()
    again = open_database(path)
    try:
        assert close(again, DAY0 + W + GRACE) == 0
        assert close(again, DAY0 + 2 * W + GRACE) == 0
        assert len(messages(again, "traffic.v1")) == 1
        with pytest.raises(sqlite3.IntegrityError):
            again.execute(
                "INSERT INTO released_cells (kind, window_start, cell, value, msg_id, released_at)"
                " VALUES ('traffic', ?, 'line:entrance', '{}', NULL, 0)",
                [DAY0],
            )
    finally:
        again.close()


def test_a_failure_while_releasing_leaves_neither_message_nor_cells(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen(db, DAY0, entrance=(2, 1))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(aggregates, "record_cells", broken)
    with pytest.raises(RuntimeError, match="power cut"):
        close(db, DAY0 + W + GRACE)
    assert outbox_rows(db) == []
    monkeypatch.undo()
    assert close(db, DAY0 + W + GRACE) == 1
    assert len(messages(db, "traffic.v1")) == 1


def test_the_device_must_match_the_topics(db: Database) -> None:
    with pytest.raises(ValueError, match="does not match"):
        close_windows(db, "till-2", TOPICS, DAY0, CONFIG, LINES, ZONES)


# Coupons


def test_coupon_counts_are_noised_with_the_store_day_epsilon(db: Database) -> None:
    seen(db, DAY0)  # the device's first data: coupon windows start here
    for offset in (100, 200, 300):
        redeem(db, DAY0 + offset, 7, 2)
    offers = [(7, 3), (7, 2)]
    assert close(db, DAY0 + W + GRACE, offers=offers, rng=random.Random(1)) == 2
    [report] = messages(db, "coupons.v1")
    reference = random.Random(1)
    scale = Fraction(1)  # cap 1 per store-day / epsilon 1 per store-day
    expected = [3 + sample_discrete_laplace(scale, reference), 0 + sample_discrete_laplace(scale, reference)]
    assert [(c["campaign"], c["offer"], c["count"]) for c in report["cells"]] == [
        (7, 2, expected[0]),
        (7, 3, expected[1]),
    ]
    assert expected != [3, 0]
    assert report["epsilon"] == pytest.approx(1.0)
    assert report["contribution_cap"] == 1
    assert report["noise"] == "discrete_laplace"
    spent = db.execute("SELECT epsilon_spent FROM privacy_budget WHERE day = '2026-01-01'").fetchall()
    assert spent == [(pytest.approx(1.0),)]
    released = dict(db.execute("SELECT cell, value FROM released_cells WHERE kind = 'coupons'").fetchall())
    assert json.loads(released["campaign:7/offer:2"]) == expected[0]


def test_a_noised_cell_is_never_noised_again(db: Database) -> None:
    seen(db, DAY0)
    redeem(db, DAY0 + 100, 7, 2)
    close(db, DAY0 + W + GRACE, offers=[(7, 2)], rng=random.Random(1))
    first = messages(db, "coupons.v1")
    for seed in range(2, 6):
        close(db, DAY0 + W + GRACE, offers=[(7, 2)], rng=random.Random(seed))
    assert messages(db, "coupons.v1") == first
    assert db.execute("SELECT epsilon_spent FROM privacy_budget").fetchall() == [(pytest.approx(1.0),)]


def test_coupon_windows_are_released_whether_or_not_anybody_redeemed(db: Database) -> None:
    seen(db, DAY0)
    redeem(db, DAY0 + W + 10, 7, 2)  # only the second window has a redemption
    close(db, DAY0 + 4 * W + GRACE, offers=[(7, 2)], rng=random.Random(3))
    assert [m["window_start"] for m in messages(db, "coupons.v1")] == [DAY0 + i * W for i in range(4)]
    assert all(len(m["cells"]) == 1 for m in messages(db, "coupons.v1"))


def test_offers_first_redeemed_today_become_cells_from_tomorrow(db: Database) -> None:
    seen(db, DAY0)
    redeem(db, DAY0 + 2 * W + 5, 9, 1)
    close(db, DAY0 + 86_400 - W, rng=random.Random(4))
    assert messages(db, "coupons.v1") == []  # the pair was unknown before this day: no cell
    assert db.execute("SELECT COUNT(*) FROM privacy_budget").fetchall() == [(0,)]
    close(db, DAY0 + 86_400 + 2 * W + GRACE, rng=random.Random(4))
    next_day = messages(db, "coupons.v1")
    assert [m["window_start"] for m in next_day] == [DAY0 + 86_400 + i * W for i in range(2)]
    assert all([(c["campaign"], c["offer"]) for c in m["cells"]] == [(9, 1)] for m in next_day)


def test_a_full_day_spends_exactly_the_daily_budget() -> None:
    db = open_database(":memory:")
    hourly = SyncConfig(window_minutes=60)
    seen(db, DAY0)
    close(db, DAY0 + 86_400 + GRACE, hourly, offers=[(1, 1)], rng=random.Random(5))
    assert len(messages(db, "coupons.v1")) == 24
    [(spent,)] = db.execute("SELECT epsilon_spent FROM privacy_budget WHERE day = '2026-01-01'").fetchall()
    assert spent == pytest.approx(1.0)
    db.close()


def test_the_day_is_charged_once_and_a_lower_budget_withholds_the_rest_of_that_day(db: Database) -> None:
    hourly = SyncConfig(window_minutes=60)
    seen(db, DAY0)
    close(db, DAY0 + 12 * 3600 + GRACE, hourly, offers=[(1, 1)], rng=random.Random(6))
    assert len(messages(db, "coupons.v1")) == 12
    spent = dict(db.execute("SELECT day, epsilon_spent FROM privacy_budget").fetchall())
    assert spent == {"2026-01-01": pytest.approx(1.0)}  # one charge covers the whole day
    stricter = SyncConfig(window_minutes=60, epsilon_per_day=0.5)
    assert close(db, DAY0 + 86_400 + 3600 + GRACE, stricter, offers=[(1, 1)], rng=random.Random(7)) == 1
    coupons = messages(db, "coupons.v1")
    assert [m["window_start"] for m in coupons[12:]] == [DAY0 + 86_400]  # the next day only
    withheld = db.execute(
        "SELECT COUNT(*) FROM released_cells WHERE kind = 'coupons' AND cell = '*'"
        " AND json_extract(value, '$.withheld') = 'budget'"
    ).fetchall()
    assert withheld == [(12,)]
    spent = dict(db.execute("SELECT day, epsilon_spent FROM privacy_budget").fetchall())
    assert spent["2026-01-01"] == pytest.approx(1.0)
    assert spent["2026-01-02"] == pytest.approx(0.5)
    # Withheld windows stay withheld: raising the budget again releases nothing for that day.
    assert close(db, DAY0 + 86_400 + 3600 + GRACE, hourly, offers=[(1, 1)]) == 0


def test_redemptions_of_other_devices_are_not_counted(db: Database) -> None:
    seen(db, DAY0)
    for offset in range(10):
        redeem(db, DAY0 + 10 + offset, 7, 2, device="till-2")
    close(db, DAY0 + W + GRACE, offers=[(7, 2)], rng=random.Random(8))
    [report] = messages(db, "coupons.v1")
    assert report["cells"][0]["count"] == sample_discrete_laplace(Fraction(1), random.Random(8))
