"""QR decode rate and time per frame on the synthetic degraded coupon set, measured in one run.

    python tests/benchmarks/bench_scanner.py [--count 400] [--seed N]

Generates the seeded test set (tests/coupons/qr_testset.py), then reads every frame with each
reader on one thread: the agent's scanner (decode_codes, and with Enlarge.ALWAYS), plain
zxing-cpp (read_barcodes with its defaults, QR formats only), OpenCV's QRCodeDetectorAruco and
QRCodeDetector (detectAndDecode).
Prints the single-frame decode rate with median and p90 ms per frame, the time on frames without
a code (what a live scanner spends most of its time on), and the decode rate per degradation
label and frame size. A frame counts as read when the expected text is among the texts returned.
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

from agent.coupons.scanner import Enlarge, QrScanner, decode_codes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "coupons"))
import qr_testset

Reader = Callable[[np.ndarray], list[str]]


def plain_zxing(image: np.ndarray) -> list[str]:
    barcodes = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    return [barcode.text for barcode in barcodes]


def opencv_reader(detector: cv2.QRCodeDetector | cv2.QRCodeDetectorAruco) -> Reader:
    def read(image: np.ndarray) -> list[str]:
        try:
            text, _, _ = detector.detectAndDecode(image)
        except cv2.error:
            return []
        return [text] if text else []

    return read


def timed(reader: Reader, image: np.ndarray) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = reader(image)
    return texts, (time.perf_counter() - started) * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=400, help="frames in the test set")
    parser.add_argument("--seed", type=int, default=qr_testset.DEFAULT_SEED)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    started = time.perf_counter()
    samples = qr_testset.make_testset(args.count, args.seed)
    print(f"generated {len(samples)} frames in {time.perf_counter() - started:.1f} s (seed {args.seed})")
    empty = [qr_testset.empty_frame(width, height, seed) for seed in range(10) for width, height in qr_testset.SIZES]

    thorough = QrScanner(enlarge=Enlarge.ALWAYS)
    readers: dict[str, Reader] = {
        "agent decode_codes": decode_codes,
        "agent, enlarge always": lambda image: list(thorough.scan(image).codes),
        "zxing-cpp plain": plain_zxing,
        "cv2 QRCodeDetectorAruco": opencv_reader(cv2.QRCodeDetectorAruco()),
        "cv2 QRCodeDetector": opencv_reader(cv2.QRCodeDetector()),
    }
    groups = sorted({label for sample in samples for label in sample.labels})
    groups += [f"{width}x{height}" for width, height in qr_testset.SIZES]

    def group_of(sample: qr_testset.Sample) -> set[str]:
        return {*sample.labels, f"{sample.size[0]}x{sample.size[1]}"}

    rows = []
    by_group: dict[str, dict[str, list[bool]]] = {}
    for name, reader in readers.items():
        for image in empty[:2]:
            reader(image)  # warm-up
        outcomes, times = [], []
        for sample in samples:
            texts, ms = timed(reader, sample.image)
            outcomes.append(sample.text in texts)
            times.append(ms)
        empty_times = [timed(reader, image)[1] for image in empty]
        rows.append(
            (
                name,
                sum(outcomes) / len(outcomes),
                statistics.median(times),
                percentile(times, 0.9),
                statistics.median(empty_times),
            )
        )
        by_group[name] = {
            group: [ok for ok, sample in zip(outcomes, samples, strict=True) if group in group_of(sample)]
            for group in groups
        }

    print()
    print(f"{'reader':26} {'read':>7} {'median ms':>10} {'p90 ms':>8} {'no-code ms':>11}")
    for name, rate, median, p90, empty_ms in rows:
        print(f"{name:26} {rate:7.1%} {median:10.2f} {p90:8.2f} {empty_ms:11.2f}")

    print()
    short = dict(zip(readers, ("agent", "agent always", "zxing-cpp", "cv2 aruco", "cv2 qr"), strict=True))
    print(f"{'decode rate by label':22} {'frames':>6} " + " ".join(f"{short[name]:>15}" for name in readers))
    for group in groups:
        count = len(by_group[next(iter(readers))][group])
        cells = " ".join(f"{sum(by_group[name][group]) / max(count, 1):15.1%}" for name in readers)
        print(f"{group:22} {count:6d} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
