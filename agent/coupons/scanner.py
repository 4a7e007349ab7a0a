"""QR codes from camera frames: zxing-cpp, then measured retries for small, blurred or faint codes.

One plain zxing-cpp pass (QR formats only) reads most frames in a few milliseconds. When it finds
nothing, the scanner retries while the frame's time budget lasts, cheapest first:

1. ``sharpen``: an unsharp mask over the whole frame (defocus, motion blur, low contrast, glare).
2. ``enlarge``: the sharpened frame enlarged 2x (linear) and read again (modules of 2-3 px).
   By default only when a pass located a symbol it could not decode (zxing-cpp reports these
   with ``return_errors``): on frames without a code, which are most frames of a live scanner,
   this cuts the time per frame about 2.5x for about 1 % fewer single-frame reads
   (``Enlarge.ALWAYS`` keeps them).

3. ``deblur``: only when a symbol was located or the frame holds a code-like patch (dense edges,
   see agent/coupons/deblur.py, or for a faint code fewer edges that share one orientation,
   deblur.streak_region): the patch's linear motion blur is measured from its cepstrum and
   undone by Wiener deconvolution, first on the patch reduced 2x (a quarter of the cost), then at
   full size, each restored crop read in turn, within its own time budget
   ``deblur_budget_ms`` (0 turns it off). A coupon on a phone moved while shown is smeared 15-40 px,
   far beyond what sharpening restores.

The first two retries were kept because they raised the decode rate on the degraded test set for the time
they cost (tests/benchmarks/bench_scanner.py measures it). Tried and dropped: re-reading an
enlarged crop around the symbols located but not decoded (it read nothing the enlarge pass
missed), CLAHE (read a few low-contrast frames that sharpening already reads), the
GlobalHistogram and FixedThreshold binarizers (each read at most one frame the default
LocalAverage missed), median and bilateral denoising, cubic instead of linear enlargement, a 1.5x
enlargement, and turning off try_invert (loses light-on-dark phone screens).

For the deblur pass of faint codes (motion set, default seed and seed 7, 80 low-contrast, 80
combined and 80 glare frames, each variant run beside the unchanged scanner) tried and dropped:
a lower edge level for every frame (30 instead of 40 passes 18 of 20 code-free frames instead of
7), the whole frame's contrast equalised before ``code_region`` (the region wanders onto the
counter's text), equalising the whole frame with statistics at full size before restoring (10
fewer glare frames read; the crop alone, as kept, reads more), subtracting the local mean
without dividing by the deviation (no more reads), the saturated glare filled with the local
mean before the Wiener filter (pixels from 250 up, soft-edged: 19 of the glare and combined
frames read instead of 71; the code's modules just below saturation still carry it) and larger
Wiener noise ratios (0.006: as many, 0.02: half as many).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zxingcpp

from agent.coupons import deblur, fusion
from agent.coupons.images import load_image
from agent.coupons.live import SharpestPick

logger = logging.getLogger(__name__)

QR_FORMATS = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
DEFAULT_BUDGET_MS = 40.0
DEFAULT_DEBLUR_BUDGET_MS = 30.0
"""Time the deblur pass may start new restorations in; one restoration (1-14 ms of a core) may overrun it."""
DEFAULT_FRAME_BUDGET_MS = 60.0
"""Time a live scanner's frame may take before the two-frame restoration starts no new candidate:
at 10 fps a frame may take up to 100 ms of a core, but the scanner device also counts people and
syncs. One candidate (a 384 px Wiener filter and three reads, 5-15 ms) may overrun it."""
DEBLUR_MIN_EDGE_DENSITY = 0.6
"""Fraction of edge pixels in the densest window from which a frame is worth deblurring: of the 20
code-free frames of bench_motion.py 7 pass, as many as at the previous 0.5 with the edge level
of 60, while 11 of the motion set's 120 frames fall below it instead of 17."""
DEBLUR_MIN_STREAK_SCORE = 0.33
"""Edge density times gradient coherence (deblur.streak_region) from which a frame below
DEBLUR_MIN_EDGE_DENSITY is deblurred all the same. Of 60 code-free frames (qr_testset.empty_frame,
seeds 0-29) the density gate alone passes 23, with this second gate still 23 (0.30: 28); of the 80
low-contrast and 80 combined frames of the motion set's default seed and seed 7 (240 each), 22
and 19 fell below the density gate, 5 and 11 below both. Through QrScanner in one run they then
read 33 of those 160 frames instead of 26; of seed 11's 40 low-contrast frames 13 instead of 11."""
ZXING_MAX_SIDE = 65535
"""zxing-cpp refuses wider or taller images."""

_SHARPEN_SIGMA = 1.5
_BINARISE_BLOCK_PX = 15
_SHARPEN_AMOUNT = 1.5


class Enlarge(StrEnum):
    """When to run the enlarge pass."""

    ALWAYS = "always"
    LOCATED = "located"  # only if a symbol was located but not decoded
    NEVER = "never"


@dataclass(frozen=True)
class ScanResult:
    """The texts found in one frame, the time taken and the passes run (in order)."""

    codes: tuple[str, ...]
    ms: float
    attempts: tuple[str, ...]


class QrScanner:
    """Reads QR codes from BGR or gray uint8 frames, retrying within a time budget per frame.

    A retry starts only while the time spent on the frame is below ``budget_ms`` (None: always
    run every pass). ``enlarge`` says when to run the enlarge pass. The deblur pass then starts
    restorations while its own time is below ``deblur_budget_ms`` (0: never deblur).
    """

    def __init__(
        self,
        budget_ms: float | None = DEFAULT_BUDGET_MS,
        enlarge: Enlarge = Enlarge.LOCATED,
        deblur_budget_ms: float = DEFAULT_DEBLUR_BUDGET_MS,
    ) -> None:
        if deblur_budget_ms < 0:
            raise ValueError(f"deblur_budget_ms must not be negative, got {deblur_budget_ms}")
        self.budget_ms = budget_ms
        self.enlarge = Enlarge(enlarge)
        self.deblur_budget_ms = deblur_budget_ms

    def scan(self, image: np.ndarray, *, deblur: bool = True) -> ScanResult:
        """Decode the QR codes in a frame; raise ValueError for an array that is not a frame.

        ``deblur=False`` skips the deblur pass (a live scanner spends it on chosen frames only)."""
        started = time.perf_counter()
        gray = to_gray(image)
        attempts = ["plain"]
        codes, located = _read(gray)
        if not codes and self._within_budget(started):
            attempts.append("sharpen")
            sharpened = _sharpen(gray)
            codes, also_located = _read(sharpened)
            located = located or also_located
            wanted = self.enlarge is Enlarge.ALWAYS or (self.enlarge is Enlarge.LOCATED and located)
            if not codes and wanted and self._within_budget(started):
                attempts.append("enlarge")
                enlarged = cv2.resize(sharpened, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
                codes, _ = _read(enlarged)
        if not codes and deblur and self.deblur_budget_ms > 0:
            codes = self._deblur(gray, located, attempts)
        ms = (time.perf_counter() - started) * 1000
        return ScanResult(codes, ms, tuple(attempts))

    def restore(self, image: np.ndarray) -> ScanResult:
        """Only the deblur pass, on a frame whose plain passes read nothing."""
        started = time.perf_counter()
        attempts: list[str] = []
        codes = self._deblur(to_gray(image), False, attempts) if self.deblur_budget_ms > 0 else ()
        return ScanResult(codes, (time.perf_counter() - started) * 1000, tuple(attempts))

    def _deblur(self, gray: np.ndarray, located: bool, attempts: list[str]) -> tuple[str, ...]:
        """Read restored crops of the code-like region until one decodes or the budget is spent."""
        started = time.perf_counter()
        if min(gray.shape) < deblur.MIN_FRAME_SIDE:
            return ()
        x, y, side, density = deblur.code_region(gray)
        if not located and density < DEBLUR_MIN_EDGE_DENSITY:
            # a faint code has too few edges above the fixed level: look for one smeared along a line
            x, y, side, score = deblur.streak_region(gray)
            if score < DEBLUR_MIN_STREAK_SCORE:
                return ()
        attempts.append("deblur")
        # the crop with its local contrast equalised (deblur.normalise_contrast): with unlimited
        # time on the motion set's default seed and seed 7 (80 frames per category), with the
        # streak gate, this read 44 low-contrast frames instead of 17 (without either), 11
        # combined instead of 10, 65 with glare instead of 62, 73 tilted instead of 67, 69 noisy
        # instead of 67 and 74 with motion alone as before; equalising only crops with fewer
        # edges (density below 0.7) read 39, 10, 62, 67, 67 and 74. It costs 2.4 ms (512 px crop).
        crop = deblur.normalise_contrast(gray[y : y + side, x : x + side])
        for restored in deblur.deblur_candidates(crop, (0, 0, side)):
            for variant in _restored_variants(restored):
                codes, _ = _read(variant)
                if codes:
                    return codes
            if (time.perf_counter() - started) * 1000 >= self.deblur_budget_ms:
                break
        return ()

    def _within_budget(self, started: float) -> bool:
        return self.budget_ms is None or (time.perf_counter() - started) * 1000 < self.budget_ms


class LiveReader:
    """Reads the frames of a live scanner: the cheap passes on every frame; then, with ``fuse``,
    on each unread frame in which something moved since the previous one, a restoration around its
    code alone and one together with the previous unread frame (agent/coupons/fusion.py); then
    the single-frame deblur pass on the sharpest of each ``deblur_every`` frames that read nothing
    (see live.SharpestPick; by default every such frame).

    Per frame, restorations start only while the frame's time is below ``frame_budget_ms``
    (DEFAULT_FRAME_BUDGET_MS); the two-frame restoration comes first, as it reads more showings
    for its time. Fusion is off by default: since the single-frame restoration was improved, on
    the motion set's 1-s showings (one thread, tests/benchmarks/bench_motion.py) restoring every
    unread frame reads 88.3 % (default seed, 60 showings), 90.0 % (seed 11, 30) and 91.1 % (seed 7,
    90, where fusion was tuned), and adding the pairs 88.3 %, 90.0 % and 92.2 %, for 1.6 times the
    CPU per showing. A frame of an idle counter costs about 10 ms: nothing moved, so nothing is fused.

    Once a code was read, the next ``deblur_every`` unread frames are each restored at once: a
    code in view is confirmed over consecutive frames, and a blurred showing would otherwise give
    only scattered reads. The extra cost is spent only while a code is in view.
    """

    def __init__(
        self,
        scanner: QrScanner,
        deblur_every: int = 1,
        fuse: bool = False,
        frame_budget_ms: float = DEFAULT_FRAME_BUDGET_MS,
    ) -> None:
        self.scanner = scanner
        self.deblur_every = deblur_every
        self.fuse = fuse
        self.frame_budget_ms = frame_budget_ms
        self._pick: SharpestPick[np.ndarray] = SharpestPick(deblur_every)
        self._follow = 0  # unread frames still to restore at once after a read
        self._previous: fusion.Prepared | None = None  # the last unread frame, ready to fuse
        self._previous_thumb: np.ndarray | None = None  # the last unread frame, reduced (fusion.moved)

    def read(self, image: np.ndarray) -> list[str]:
        """The texts read in this frame, restored from the sharpest recent unread one, or from this
        frame and the previous unread one together."""
        started = time.perf_counter()
        codes = list(self.scanner.scan(image, deblur=False).codes)
        if not codes and self.scanner.deblur_budget_ms > 0:
            gray = to_gray(image)
            if self.fuse:
                codes = self._fused(gray, started)
            if not codes:
                # the single-frame pass starts within the frame's budget (and may then spend its own)
                room = (time.perf_counter() - started) * 1000 < self.frame_budget_ms
                codes = self._restored(gray, room)
        if codes:
            self._pick.reset()
            self._follow = self.deblur_every
            self._previous = None
            self._previous_thumb = None
        return codes

    def _restored(self, gray: np.ndarray, room: bool) -> list[str]:
        """The single-frame deblur pass on this unread frame, or on the sharpest of the last
        ``deblur_every`` (every one while following a read); only with ``room`` left in the frame's
        budget."""
        if self._follow > 0 or self.deblur_every == 1:
            self._follow = max(self._follow - 1, 0)
            return list(self.scanner.restore(gray).codes) if room else []
        chosen = self._pick.offer(deblur.region_sharpness(gray), gray)
        if chosen is None or not room:
            return []
        return list(self.scanner.restore(chosen).codes)

    def _fused(self, gray: np.ndarray, started: float) -> list[str]:
        """Read this frame restored on its own around its code (see fusion.code_centre) and together
        with the previous unread one, starting restorations only while the frame's time since
        ``started`` is below ``frame_budget_ms``; remember this frame."""
        thumb, thumb_before = fusion.thumbnail(gray), self._previous_thumb
        self._previous_thumb = thumb
        current = fusion.prepare(gray) if fusion.moved(thumb, thumb_before) else None
        previous, self._previous = self._previous, current
        if current is None:
            return []
        for restored in fusion.fused_candidates(current, previous):
            for variant in _restored_variants(restored):
                codes, _ = _read(variant)
                if codes:
                    return list(codes)
            if (time.perf_counter() - started) * 1000 >= self.frame_budget_ms:
                break
        return []


_DEFAULT = QrScanner()


def decode_codes(image: np.ndarray) -> list[str]:
    """Texts of the QR codes in a BGR or gray uint8 frame: de-duplicated, in the order found."""
    return list(_DEFAULT.scan(image).codes)


def scan(image: np.ndarray) -> ScanResult:
    """Like decode_codes, with the time taken and the passes run."""
    return _DEFAULT.scan(image)


def to_gray(image: np.ndarray) -> np.ndarray:
    """A contiguous 2-D uint8 image from a gray (HxW or HxWx1) or BGR (HxWx3) uint8 frame."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"a frame is a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"a frame has uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim != 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"a frame is HxW gray or HxWx3 BGR, got shape {image.shape}")
    if max(image.shape) > ZXING_MAX_SIDE:
        raise ValueError(f"a frame is at most {ZXING_MAX_SIDE} px per side, got {image.shape[1]}x{image.shape[0]}")
    return np.ascontiguousarray(image)


def _read(gray: np.ndarray) -> tuple[tuple[str, ...], bool]:
    """One zxing-cpp pass: the decoded texts (each once, in zxing-cpp's order), and whether it
    located any symbol it could not decode."""
    barcodes = zxingcpp.read_barcodes(gray, formats=QR_FORMATS, return_errors=True)
    texts = tuple(dict.fromkeys(barcode.text for barcode in barcodes if barcode.valid))
    return texts, any(not barcode.valid for barcode in barcodes)


def _restored_variants(restored: np.ndarray) -> Iterator[np.ndarray]:
    """A deconvolved crop as read in turn: enlarged 2x and 4x (restored modules are soft, and
    zxing-cpp samples them badly at their own size), then binarised by a local mean (ringing leaves
    uneven module levels that one global threshold splits wrongly). With the true blur of the
    motion set's default seed, of 120 frames these read 58, 69 and 72; the crop as is, enlarged 2x
    and binarised over 31 px (the previous reads) 68."""
    yield cv2.resize(restored, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    yield cv2.resize(restored, None, fx=4, fy=4, interpolation=cv2.INTER_LINEAR)
    yield cv2.adaptiveThreshold(restored, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, _BINARISE_BLOCK_PX, 0)


def _sharpen(gray: np.ndarray) -> np.ndarray:
    """Unsharp mask: the image plus _SHARPEN_AMOUNT times its difference from a Gaussian blur."""
    blurred = cv2.GaussianBlur(gray, (0, 0), _SHARPEN_SIGMA)
    sharpened: np.ndarray = cv2.addWeighted(gray, 1 + _SHARPEN_AMOUNT, blurred, -_SHARPEN_AMOUNT, 0)
    return sharpened


def scan_files(paths: list[Path]) -> list[dict[str, Any]]:
    """``retail-agent scan``: per file its codes and decode time, or why it was not read."""
    results: list[dict[str, Any]] = []
    for path in paths:
        try:
            image = load_image(path)
            started = time.perf_counter()
            codes = decode_codes(image)
        except ValueError as exc:
            logger.warning("%s: %s", path, exc)
            results.append({"file": str(path), "error": str(exc)})
            continue
        results.append({"file": str(path), "codes": codes, "ms": round((time.perf_counter() - started) * 1000, 2)})
    return results
