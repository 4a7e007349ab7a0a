"""LiveScanner: a code is confirmed over consecutive frames, acted on once, and again after it left."""

from __future__ import annotations

import pytest

from agent.coupons.live import LiveScanner, SharpestPick

A, B = "C1:AAA", "C1:BBB"

# Each row: (time in s, codes read in that frame, codes expected back). Frames come every 0.2 s
# (the default 5 scans per second) unless the table says otherwise.
CASES = {
    "a code held in view is acted on once, on its second frame": (
        2,
        [(0.0, [A], []), (0.2, [A], [A]), (0.4, [A], []), (0.6, [A], []), (0.8, [A], [])],
    ),
    "a single glimpse is never acted on": (
        2,
        [(0.0, [A], []), (0.2, [], []), (0.4, [], []), (5.0, [], [])],
    ),
    "a missed frame restarts the confirmation count": (
        3,
        [(0.0, [A], []), (0.2, [A], []), (0.4, [], []), (0.6, [A], []), (0.8, [A], []), (1.0, [A], [A])],
    ),
    "confirm_frames 1 acts on the first reading": (
        1,
        [(0.0, [A], [A]), (0.2, [A], [])],
    ),
    "a short gap in view does not act again": (
        2,
        [(0.0, [A], []), (0.2, [A], [A]), (0.4, [], []), (2.0, [], []), (3.1, [A], []), (3.3, [A], [])],
    ),
    "a code shown again after leaving view for longer than forget_after_s is acted on again": (
        2,
        [(0.0, [A], []), (0.2, [A], [A]), (3.3, [A], []), (3.5, [A], [A]), (3.7, [A], [])],
    ),
    "exactly forget_after_s out of view still counts as in view": (
        2,
        [(0.0, [A], []), (0.5, [A], [A]), (3.5, [A], []), (3.75, [A], [])],
    ),
    "two codes in view are confirmed independently, in reading order": (
        2,
        [(0.0, [B, A], []), (0.2, [A], [A]), (0.4, [A, B], []), (0.6, [B, A], [B]), (0.8, [B, A], [])],
    ),
    "both codes confirmed in the same frame come back in reading order": (
        2,
        [(0.0, [A, B], []), (0.2, [B, A], [B, A])],
    ),
    "a code read twice in one frame counts as one reading": (
        2,
        [(0.0, [A, A], []), (0.2, [A], [A])],
    ),
    "a code kept in view across a long time with frequent readings stays acted on": (
        2,
        [(float(t) * 0.2, [A], [A] if t == 1 else []) for t in range(100)],
    ),
}


@pytest.mark.parametrize(("confirm", "frames"), list(CASES.values()), ids=list(CASES))
def test_live_scanner_follows_the_frame_table(confirm: int, frames: list) -> None:
    live = LiveScanner(confirm_frames=confirm, forget_after_s=3.0)
    got = [live.observe(codes, t) for t, codes, _ in frames]
    assert got == [expected for _, _, expected in frames]


def test_forgotten_codes_leave_memory() -> None:
    live = LiveScanner(confirm_frames=2, forget_after_s=1.0)
    live.observe([A, B], 0.0)
    live.observe([A], 0.9)
    assert live.in_view == {A, B}
    live.observe([], 1.5)
    assert live.in_view == {A}
    live.observe([], 2.0)
    assert live.in_view == frozenset()


def test_reset_forgets_codes_in_view() -> None:
    live = LiveScanner(confirm_frames=1)
    assert live.observe([A], 0.0) == [A]
    live.reset()
    assert live.observe([A], 0.2) == [A]


def test_time_going_backwards_is_refused() -> None:
    live = LiveScanner()
    live.observe([A], 1.0)
    with pytest.raises(ValueError, match="backwards"):
        live.observe([A], 0.5)


@pytest.mark.parametrize(
    ("confirm", "forget"),
    [(0, 3.0), (-1, 3.0), (2, 0.0), (2, -1.0), (2, float("nan"))],
)
def test_bad_settings_are_refused(confirm: int, forget: float) -> None:
    with pytest.raises(ValueError):
        LiveScanner(confirm_frames=confirm, forget_after_s=forget)


def test_the_sharpest_of_each_window_is_picked() -> None:
    pick: SharpestPick[str] = SharpestPick(window=3)
    assert pick.offer(1.0, "a") is None
    assert pick.offer(5.0, "b") is None
    assert pick.offer(2.0, "c") == "b"
    assert pick.offer(0.5, "d") is None  # a new window
    pick.reset()
    assert pick.offer(0.1, "e") is None
    assert pick.offer(0.2, "f") is None
    assert pick.offer(0.05, "g") == "f"


def test_a_window_of_one_picks_every_frame() -> None:
    pick: SharpestPick[int] = SharpestPick(window=1)
    assert [pick.offer(float(i), i) for i in range(3)] == [0, 1, 2]


def test_an_empty_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window"):
        SharpestPick(window=0)


def test_a_signed_code_is_acted_on_at_its_first_reading_and_once() -> None:
    live = LiveScanner(confirm_frames=2, signed=lambda code: code == A)
    assert live.observe([A, B], 0.0) == [A]
    assert live.observe([A, B], 0.2) == [B]  # B is not signed: it waits for its second frame
    assert live.observe([A, B], 0.4) == []
    assert live.observe([], 5.0) == []
    assert live.observe([A], 5.2) == [A]  # shown again after leaving view


def test_a_code_that_fails_the_signature_check_still_needs_confirmation() -> None:
    checked: list[str] = []

    def signed(code: str) -> bool:
        checked.append(code)
        return False

    live = LiveScanner(confirm_frames=2, signed=signed)
    assert live.observe([A], 0.0) == []
    assert live.observe([], 0.2) == []
    assert live.observe([A], 0.4) == []
    assert live.observe([A], 0.6) == [A]
    assert checked == [A, A]  # asked once per new streak, not on every frame
