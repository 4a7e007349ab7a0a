"""Counting simulated walkers, checked against an independent measurement of the same paths.

jupedsim walks a few dozen people through a 20 m x 6 m corridor in both directions; some turn
back after crossing the middle, some before reaching it. Their exact positions, sampled at 10 Hz,
go to LineCounter and ZoneCounter (track id = agent id). pedpy measures the line crossings of the
same trajectories and shapely decides zone membership, so the expected numbers come from code
that shares nothing with agent.counting. A second pass adds a few centimetres of jitter and drops
samples, and the hold and hysteresis rules must keep the counts exact.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import pytest

from agent.counting.geometry import Point
from agent.counting.lines import SEGMENT_TOLERANCE, LineCounter
from agent.counting.zones import Visit, ZoneCounter

jps = pytest.importorskip("jupedsim")
pedpy = pytest.importorskip("pedpy")
shapely = pytest.importorskip("shapely")
pd = pytest.importorskip("pandas")
compute_crossing_frames = pytest.importorskip("pedpy.methods.method_utils").compute_crossing_frames

pytestmark = pytest.mark.integration

RATE = 10  # samples per second
LENGTH, WIDTH = 20.0, 6.0  # corridor size in metres
SCALE = 50.0  # pixels per metre when positions are handed to the counters

# The middle line, drawn so that walking towards +x is ``in``.
MIDDLE = ((10.0, WIDTH), (10.0, 0.0))
# A short line covering the lower part of the corridor at x = 14. Its end sits where no walker
# passes within 15 cm (see test_no_walker_passes_close_to_the_short_segment_end), so a few
# centimetres of jitter cannot decide whether a crossing was beside the segment or on it.
SHORT = ((14.0, 2.7), (14.0, 0.0))
# A zone across the whole corridor (walkers cross its borders head on) ...
AISLE = [(8.0, 0.0), (12.0, 0.0), (12.0, WIDTH), (8.0, WIDTH)]
# ... and an irregular one in the upper half that people brush past.
DISPLAY = [(8.5, 3.4), (11.5, 3.1), (12.2, 5.0), (10.0, 5.9), (7.8, 4.9)]


@dataclass(frozen=True)
class Sample:
    """One 10 Hz sample: time, positions in metres, and tracks that ended."""

    t: float
    positions: dict[int, tuple[float, float]]
    ended: tuple[int, ...]


@dataclass(frozen=True)
class Walk:
    samples: list[Sample]
    kinds: dict[int, str]


def _simulate() -> Walk:
    area = shapely.box(0.0, 0.0, LENGTH, WIDTH)
    sim = jps.Simulation(model=jps.CollisionFreeSpeedModel(), geometry=area, dt=0.01)
    exit_right = sim.add_exit_stage(shapely.box(19.5, 0.5, LENGTH, WIDTH - 0.5))
    exit_left = sim.add_exit_stage(shapely.box(0.0, 0.5, 0.5, WIDTH - 0.5))

    def journey(stages: list[int]) -> int:
        description = jps.JourneyDescription(stages)
        for here, after in itertools.pairwise(stages):
            description.set_transition_for_stage(here, jps.Transition.create_fixed_transition(after))
        return int(sim.add_journey(description))

    def add(position: tuple[float, float], stages: list[int], speed: float) -> int:
        params = jps.CollisionFreeSpeedModelAgentParameters(
            position=position, journey_id=journey(stages), stage_id=stages[0], desired_speed=speed
        )
        return int(sim.add_agent(params))

    def turn_at(x: float, y: float) -> int:
        return int(sim.add_waypoint_stage((x, y), 0.5))

    spawn = {
        "left": shapely.box(1.0, 0.5, 6.0, WIDTH - 0.5),
        "right": shapely.box(14.0, 0.5, 19.0, WIDTH - 0.5),
    }
    kinds: dict[int, str] = {}
    left = jps.distribute_by_number(
        polygon=spawn["left"], number_of_agents=20, distance_to_agents=0.5, distance_to_polygon=0.3, seed=1
    )
    for i, (x, y) in enumerate(left):
        speed = 1.0 + 0.02 * i
        if i < 3:
            kinds[add((x, y), [turn_at(13.0, y), exit_left], speed)] = "left, turns after the middle"
        elif i < 6:
            kinds[add((x, y), [turn_at(8.0, y), exit_left], speed)] = "left, turns before the middle"
        else:
            kinds[add((x, y), [exit_right], speed)] = "left to right"
    right = jps.distribute_by_number(
        polygon=spawn["right"], number_of_agents=20, distance_to_agents=0.5, distance_to_polygon=0.3, seed=2
    )
    for i, (x, y) in enumerate(right):
        speed = 1.0 + 0.02 * i
        if i < 4:
            kinds[add((x, y), [turn_at(7.0, y), exit_right], speed)] = "right, turns after the middle"
        else:
            kinds[add((x, y), [exit_left], speed)] = "right to left"

    samples: list[Sample] = []
    previous: set[int] = set()
    while True:
        positions = {int(agent.id): tuple(agent.position) for agent in sim.agents()}
        ended = tuple(sorted(previous - positions.keys()))
        samples.append(Sample(sim.iteration_count() * 0.01, positions, ended))  # type: ignore[arg-type]
        previous = set(positions)
        if not positions:
            break
        assert sim.iteration_count() < 120 * 100, "walkers did not leave the corridor within 2 minutes"
        sim.iterate(100 // RATE)
    return Walk(samples, kinds)


@pytest.fixture(scope="module")
def walk() -> Walk:
    return _simulate()


def _noisy(walk: Walk, sigma: float, drop: float, seed: int) -> Walk:
    """The same walk with Gaussian jitter on every position and some samples missing."""
    rng = random.Random(seed)
    samples = []
    for sample in walk.samples:
        positions = {
            track: (x + rng.gauss(0.0, sigma), y + rng.gauss(0.0, sigma))
            for track, (x, y) in sample.positions.items()
            if rng.random() >= drop
        }
        samples.append(replace(sample, positions=positions))
    return Walk(samples, walk.kinds)


def _px(xy: tuple[float, float]) -> Point:
    return Point(xy[0] * SCALE, xy[1] * SCALE)


def _count_line(walk: Walk, line: tuple[tuple[float, float], ...], **options: object) -> Counter[tuple[int, str]]:
    counter = LineCounter("line", _px(line[0]), _px(line[1]), **options)  # type: ignore[arg-type]
    found: Counter[tuple[int, str]] = Counter()
    for sample in walk.samples:
        positions = {track: _px(xy) for track, xy in sample.positions.items()}
        found.update((c.track_id, c.direction) for c in counter.update(positions, sample.ended))
    found.update((c.track_id, c.direction) for c in counter.finish())
    return found


def _with_tolerance(line: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
    """The segment lengthened at both ends by the tolerance LineCounter allows."""
    (ax, ay), (bx, by) = line
    dx, dy = (bx - ax) * SEGMENT_TOLERANCE, (by - ay) * SEGMENT_TOLERANCE
    return (ax - dx, ay - dy), (bx + dx, by + dy)


def _pedpy_crossings(walk: Walk, line: tuple[tuple[float, float], ...]) -> Counter[tuple[int, str]]:
    """Every crossing pedpy finds, with its direction taken from the side it ends on.

    The measurement line is the segment with LineCounter's end tolerance added.
    """
    rows = [
        (track, frame, x, y) for frame, sample in enumerate(walk.samples) for track, (x, y) in sample.positions.items()
    ]
    data = pedpy.TrajectoryData(data=pd.DataFrame(rows, columns=["id", "frame", "x", "y"]), frame_rate=RATE)
    crossings = compute_crossing_frames(traj_data=data, measurement_line=pedpy.MeasurementLine(_with_tolerance(line)))
    (ax, ay), (bx, by) = line
    found: Counter[tuple[int, str]] = Counter()
    for track, frame in zip(crossings["id"], crossings["frame"], strict=True):
        x, y = walk.samples[frame].positions[track]
        ends_right = (bx - ax) * (y - ay) - (by - ay) * (x - ax) > 0  # right of A→B with y pointing down
        found[(int(track), "in" if ends_right else "out")] += 1
    return found


def _net(crossings: Counter[tuple[int, str]]) -> Counter[tuple[int, str]]:
    total: defaultdict[int, int] = defaultdict(int)
    for (track, direction), n in crossings.items():
        total[track] += n if direction == "in" else -n
    return Counter({(track, "in" if n > 0 else "out"): 1 for track, n in total.items() if n != 0})


def _directions(crossings: Counter[tuple[int, str]]) -> Counter[str]:
    return Counter({d: sum(n for (_, direction), n in crossings.items() if direction == d) for d in ("in", "out")})


def test_the_scenario_is_what_it_claims_to_be(walk: Walk) -> None:
    kinds = Counter(walk.kinds.values())
    assert kinds == {
        "left to right": 14,
        "right to left": 16,
        "left, turns after the middle": 3,
        "left, turns before the middle": 3,
        "right, turns after the middle": 4,
    }
    # pedpy sees each through walker once and each walker turning after the middle twice
    truth = _pedpy_crossings(walk, MIDDLE)
    assert _directions(truth) == {"in": 14 + 3 + 4, "out": 16 + 3 + 4}
    for track, kind in walk.kinds.items():
        expected = {
            "left to right": {(track, "in"): 1},
            "right to left": {(track, "out"): 1},
            "left, turns after the middle": {(track, "in"): 1, (track, "out"): 1},
            "right, turns after the middle": {(track, "in"): 1, (track, "out"): 1},
            "left, turns before the middle": {},
        }[kind]
        assert {key: n for key, n in truth.items() if key[0] == track} == expected, kind


@pytest.mark.parametrize("line", [MIDDLE, SHORT], ids=["middle", "short-segment"])
def test_line_counts_match_pedpy_on_exact_trajectories(walk: Walk, line: tuple[tuple[float, float], ...]) -> None:
    truth = _pedpy_crossings(walk, line)
    assert sum(truth.values()) > 10, "the scenario should cross this line"
    assert _count_line(walk, line, hold=2) == truth


def test_short_segment_ignores_walkers_passing_beyond_its_end(walk: Walk) -> None:
    segment = _count_line(walk, SHORT, hold=2)
    infinite = _count_line(walk, SHORT, hold=2, segment=False)
    assert sum(infinite.values()) > sum(segment.values()) > 0


def test_net_mode_matches_the_net_of_pedpy_crossings(walk: Walk) -> None:
    truth = _net(_pedpy_crossings(walk, MIDDLE))
    assert _directions(truth) == {"in": 14, "out": 16}
    assert _count_line(walk, MIDDLE, hold=2, net=True) == truth


def test_no_walker_passes_close_to_the_short_segment_end(walk: Walk) -> None:
    (x_line, y_end), _ = _with_tolerance(SHORT)
    passes = []
    for track in walk.kinds:
        path = [s.positions[track] for s in walk.samples if track in s.positions]
        for (x0, y0), (x1, y1) in itertools.pairwise(path):
            if (x0 - x_line) * (x1 - x_line) < 0:
                passes.append(y0 + (y1 - y0) * (x_line - x0) / (x1 - x0))
    assert len(passes) > 20
    assert min(abs(y - y_end) for y in passes) > 0.15


@pytest.mark.parametrize(("hold", "net"), [(3, False), (2, True), (3, True)])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_hold_keeps_line_counts_exact_with_jitter_and_dropped_frames(
    walk: Walk, seed: int, hold: int, net: bool
) -> None:
    # hold=2 without net mode is left out on purpose: walkers held up in the counterflow linger
    # a few centimetres from the middle line for a second, and 3 cm of jitter then puts them
    # across it for two frames now and then, adding an in/out pair (see test_lines).
    noisy = _noisy(walk, sigma=0.03, drop=0.05, seed=seed)
    for line in (MIDDLE, SHORT):
        truth = _pedpy_crossings(walk, line)
        assert _count_line(noisy, line, hold=hold, net=net) == (_net(truth) if net else truth)


def _visit(track: int, enter_t: float, exit_t: float) -> Visit:
    return Visit("zone", track, enter_t, exit_t, exit_t - enter_t)


def _shapely_visits(walk: Walk, polygon: Sequence[tuple[float, float]]) -> list[Visit]:
    """Runs of consecutive samples inside the polygon, per track, as visits."""
    shape = shapely.Polygon(polygon)
    open_since: dict[int, float] = {}
    last_seen: dict[int, float] = {}
    visits: list[Visit] = []
    for sample in walk.samples:
        for track in sample.ended:
            if track in open_since:
                visits.append(_visit(track, open_since.pop(track), last_seen[track]))
        for track, (x, y) in sample.positions.items():
            last_seen[track] = sample.t
            inside = bool(shapely.contains_xy(shape, x, y))
            if inside and track not in open_since:
                open_since[track] = sample.t
            elif not inside and track in open_since:
                visits.append(_visit(track, open_since.pop(track), sample.t))
    assert not open_since
    return sorted(visits, key=lambda v: (v.track_id, v.enter_t))


def _zone_run(walk: Walk, polygon: Sequence[tuple[float, float]], min_frames: int) -> tuple[list[int], list[Visit]]:
    zone = ZoneCounter("zone", [_px(p) for p in polygon], min_frames=min_frames)
    occupancy: list[int] = []
    visits: list[Visit] = []
    for sample in walk.samples:
        positions = {track: _px(xy) for track, xy in sample.positions.items()}
        frame = zone.update(positions, sample.t, sample.ended)
        occupancy.append(frame.occupancy)
        visits.extend(frame.exited)
    visits.extend(zone.finish(walk.samples[-1].t))
    return occupancy, sorted(visits, key=lambda v: (v.track_id, v.enter_t))


@pytest.mark.parametrize("polygon", [AISLE, DISPLAY], ids=["aisle", "display"])
def test_zone_occupancy_and_visits_match_shapely_on_exact_trajectories(
    walk: Walk, polygon: list[tuple[float, float]]
) -> None:
    shape = shapely.Polygon(polygon)
    expected = [
        sum(bool(shapely.contains_xy(shape, x, y)) for x, y in sample.positions.values()) for sample in walk.samples
    ]
    assert max(expected) >= 3, "the scenario should fill this zone"
    occupancy, visits = _zone_run(walk, polygon, min_frames=1)
    assert occupancy == expected
    assert visits == _shapely_visits(walk, polygon)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_hysteresis_keeps_zone_visits_exact_with_jitter_and_dropped_frames(walk: Walk, seed: int) -> None:
    truth = _shapely_visits(walk, AISLE)
    _, visits = _zone_run(_noisy(walk, sigma=0.03, drop=0.05, seed=seed), AISLE, min_frames=2)
    assert [v.track_id for v in visits] == [v.track_id for v in truth]
    # jitter and missing samples may move an entry or exit by a few samples, not more
    for got, want in zip(visits, truth, strict=True):
        assert got.enter_t == pytest.approx(want.enter_t, abs=0.35)
        assert got.exit_t == pytest.approx(want.exit_t, abs=0.35)


def test_without_hold_the_same_jitter_inflates_counts(walk: Walk) -> None:
    noisy = _noisy(walk, sigma=0.05, drop=0.0, seed=31)
    truth = sum(_pedpy_crossings(walk, MIDDLE).values())
    assert sum(_count_line(noisy, MIDDLE, hold=1).values()) > truth
    assert sum(_count_line(noisy, MIDDLE, hold=3).values()) == truth


def _all_tracks(samples: Iterable[Sample]) -> set[int]:
    return {track for sample in samples for track in sample.positions}


def test_every_track_ends_exactly_once(walk: Walk) -> None:
    ended = [track for sample in walk.samples for track in sample.ended]
    assert sorted(ended) == sorted(_all_tracks(walk.samples)) == sorted(walk.kinds)


# A diagonal line across the whole corridor, drawn so that walking towards +x is ``in``.
DIAGONAL = ((9.0, WIDTH), (11.0, 0.0))


@pytest.mark.parametrize("line", [MIDDLE, SHORT, DIAGONAL], ids=["middle", "short-segment", "diagonal"])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_band_keeps_line_counts_exact_with_jitter_and_a_two_frame_hold(
    walk: Walk, seed: int, line: tuple[tuple[float, float], ...]
) -> None:
    # The case the hold alone cannot handle (see above): with a band of 0.05 box heights (10 cm for
    # the 100 px = 2 m a track without a height is taken to be) 3 cm of jitter beside the line
    # counts nothing, and every real crossing still counts once.
    noisy = _noisy(walk, sigma=0.03, drop=0.05, seed=seed)
    truth = _pedpy_crossings(walk, line)
    assert sum(truth.values()) > 10
    assert _count_line(noisy, line, hold=2, band=0.05) == truth


def test_without_the_band_a_two_frame_hold_adds_crossings_now_and_then(walk: Walk) -> None:
    """The counterpart of the test above: the band is what makes the difference."""
    exact = []
    for seed, line in itertools.product([11, 12, 13], [MIDDLE, DIAGONAL]):
        noisy = _noisy(walk, sigma=0.03, drop=0.05, seed=seed)
        exact.append(_count_line(noisy, line, hold=2) == _pedpy_crossings(walk, line))
    assert not all(exact)
