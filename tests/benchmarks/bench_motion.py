"""QR decoding of coupons moved while shown: the agent's scanner against plain zxing-cpp, one run.

    python tests/benchmarks/bench_motion.py [--count 120] [--showings 30] [--seed N]

Generates the seeded motion set (tests/coupons/qr_motionset.py: signed tokens, 15-40 px motion
blur at any angle, alone and with perspective, glare, low contrast, noise) and reads every frame
on one thread with plain zxing-cpp (read_barcodes, QR only), the agent's scanner without the
deblur pass and the agent's scanner as configured by default (deblur on). Prints per category the
single-frame decode rate and median ms; the time per frame without a code (median and worst);
and for 1-s showings (10 frames of one moving coupon) the fraction in which the code was read in
at least one frame, and the fraction a live scanner acts on (read in 2 consecutive frames, the
default confirm_frames, and 1, and 2 unless the read's signature verifies, the default
accept_signed_at_once), also for the live reader that restores only the sharpest of
every 2 unread frames (a former default), every unread frame (the default), and every unread frame plus
each pair of consecutive unread frames (coupons.fuse_frames, agent/coupons/fusion.py); with the mean and
worst ms per frame, the CPU time per showing (one thread) and the showings acted on per category. A
frame counts as read when the expected token is among the texts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

from agent.coupons.live import LiveScanner
from agent.coupons.scanner import LiveReader, QrScanner
from agent.coupons.token import VerifyResult, verify_token

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coupons"))
import qr_motionset
import qr_testset

Reader = Callable[[np.ndarray], list[str]]
CODE = "code"
"""Stands for the showing's expected token in the confirmation replay (only correct reads count)."""


def plain_zxing(image: np.ndarray) -> list[str]:
    barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    return [barcode.text for barcode in barcodes]


def timed(reader: Reader, image: np.ndarray) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = reader(image)
    return texts, (time.perf_counter() - started) * 1000


def acted_on(reads: list[bool], confirm: int, signed: Callable[[str], bool] | None = None) -> bool:
    live = LiveScanner(confirm_frames=confirm, signed=signed)
    return any(live.observe([CODE] if read else [], index * 0.1) for index, read in enumerate(reads))


def signature_check(seed: int, text: str) -> Callable[[str], bool]:
    """Whether a read holds the set's issuer signature, as the agent checks it (accept_signed_at_once)."""
    keys = {qr_motionset.ISSUER_KEY_ID: qr_motionset.issuer_public(seed)}

    def signed(code: str) -> bool:
        verification = verify_token(text if code == CODE else code, keys, 0, (), qr_motionset.NOW)
        return verification.result is VerifyResult.VALID

    return signed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=120, help="single frames (20 per category at 120)")
    parser.add_argument("--showings", type=int, default=30, help="1-s showings of 10 frames each")
    parser.add_argument("--seed", type=int, default=qr_motionset.DEFAULT_SEED)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    started = time.perf_counter()
    samples = qr_motionset.make_motionset(args.count, args.seed)
    key = qr_motionset.issuer_key(args.seed)
    showings = [qr_motionset.make_showing(index, args.seed, key) for index in range(args.showings)]
    empty = [qr_testset.empty_frame(width, height, seed) for seed in range(10) for width, height in qr_testset.SIZES]
    print(f"generated {len(samples)} frames and {len(showings)} showings in {time.perf_counter() - started:.1f} s")

    no_deblur = QrScanner(deblur_budget_ms=0)
    agent = QrScanner()
    readers: dict[str, Reader] = {
        "zxing-cpp plain": plain_zxing,
        "agent, no deblur": lambda image: list(no_deblur.scan(image).codes),
        "agent (deblur)": lambda image: list(agent.scan(image).codes),
    }
    categories = list(qr_motionset.CATEGORIES)

    print()
    header = f"{'category':22} {'frames':>6} " + " ".join(f"{name:>24}" for name in readers)
    print(header)
    print(f"{'':22} {'':6} " + " ".join(f"{'read':>12}{'median ms':>12}" for _ in readers))
    results: dict[str, list[tuple[bool, float]]] = {}
    for name, reader in readers.items():
        reader(empty[0])  # warm-up
        results[name] = [
            (sample.text in texts, ms) for sample in samples for texts, ms in [timed(reader, sample.image)]
        ]
    for category in [*categories, "all"]:
        chosen = [i for i, sample in enumerate(samples) if category in ("all", sample.category)]
        cells = []
        for name in readers:
            rows = [results[name][i] for i in chosen]
            rate = sum(ok for ok, _ in rows) / max(len(rows), 1)
            cells.append(f"{rate:12.1%}{statistics.median(ms for _, ms in rows):12.2f}")
        print(f"{category:22} {len(chosen):6d} " + " ".join(cells))

    print()
    print(
        f"{'frames without a code':22} {len(empty):6d} " + " ".join(f"{'median':>12}{'worst ms':>12}" for _ in readers)
    )
    cells = []
    for reader in readers.values():
        times = [timed(reader, image)[1] for image in empty]
        cells.append(f"{statistics.median(times):12.2f}{max(times):12.2f}")
    print(f"{'':22} {'':6} " + " ".join(cells))

    print()
    restore_ms = sorted(agent.restore(sample.image).ms for sample in samples)
    print()
    print(
        f"deblur pass alone (QrScanner.restore, budget {agent.deblur_budget_ms:.0f} ms) on {len(samples)} frames: "
        f"median {statistics.median(restore_ms):.1f} ms, p90 {restore_ms[int(0.9 * len(restore_ms))]:.1f}, "
        f"p99 {restore_ms[min(len(restore_ms) - 1, int(0.99 * len(restore_ms)))]:.1f}, worst {restore_ms[-1]:.1f}"
    )

    live_readers: dict[str, Callable[[], Reader]] = {
        **{name: (lambda reader=reader: reader) for name, reader in readers.items()},
        "live, sharpest of 2": lambda: LiveReader(QrScanner(), deblur_every=2, fuse=False).read,
        "live, every frame (default)": lambda: LiveReader(QrScanner()).read,
        "live, every frame + pairs": lambda: LiveReader(QrScanner(), fuse=True).read,
    }
    reads: dict[str, list[list[bool]]] = {}
    frame_ms: dict[str, list[float]] = {}
    showing_cpu_ms: dict[str, list[float]] = {}
    for name, make in live_readers.items():
        reads[name], frame_ms[name], showing_cpu_ms[name] = [], [], []
        for showing in showings:
            reader = make()  # a new showing: a fresh live reader
            cpu_started = time.thread_time()
            timings = [timed(reader, frame.image) for frame in showing]
            showing_cpu_ms[name].append((time.thread_time() - cpu_started) * 1000)
            reads[name].append([frame.text in texts for frame, (texts, _) in zip(showing, timings, strict=True)])
            frame_ms[name].extend(ms for _, ms in timings)
    print()
    print(f"{'1-s showings':22} {len(showings):6d} " + " ".join(f"{name:>24}" for name in live_readers))
    for label, judge in (
        ("read in any frame", any),
        ("acted on, confirm 1", lambda reads: acted_on(reads, 1)),
        ("acted on, confirm 2", lambda reads: acted_on(reads, 2)),
        ("confirm 2, signed once", None),
    ):
        cells = []
        for name in live_readers:
            if judge is None:  # the default: a read whose signature verifies is acted on at once
                outcomes = [
                    acted_on(showing, 2, signature_check(args.seed, frames[0].text))
                    for showing, frames in zip(reads[name], showings, strict=True)
                ]
            else:
                outcomes = [judge(showing) for showing in reads[name]]
            cells.append(f"{sum(outcomes) / max(len(outcomes), 1):24.1%}")
        print(f"{label:22} {'':6} " + " ".join(cells))
    for label, statistic in (("mean ms per frame", statistics.mean), ("worst ms per frame", max)):
        cells = [f"{statistic(frame_ms[name]):24.2f}" for name in live_readers]
        print(f"{label:22} {'':6} " + " ".join(cells))
    for label, statistic in (("mean CPU ms per showing", statistics.mean), ("worst CPU ms per showing", max)):
        cells = [f"{statistic(showing_cpu_ms[name]):24.1f}" for name in live_readers]
        print(f"{label:22} {'':6} " + " ".join(cells))

    print()
    print("1-s showings acted on (confirm 2, signed once) per category")
    print(f"{'category':22} {'shown':>6} " + " ".join(f"{name:>24}" for name in live_readers))
    for category in [*categories, "all"]:
        chosen = [i for i, showing in enumerate(showings) if category in ("all", showing[0].category)]
        cells = []
        for name in live_readers:
            outcomes = [acted_on(reads[name][i], 2, signature_check(args.seed, showings[i][0].text)) for i in chosen]
            cells.append(f"{sum(outcomes):17d} {sum(outcomes) / max(len(outcomes), 1):6.1%}")
        print(f"{category:22} {len(chosen):6d} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
