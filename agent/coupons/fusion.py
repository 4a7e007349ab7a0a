"""Restore a moving coupon from two consecutive frames at once: align, then a two-frame Wiener filter.

The frames of a showing share the code but not the blur: the hand's speed and direction change
from frame to frame. A linear blur's spectrum has zeros along lines across its direction, where
one frame holds no information and its own Wiener filter can only give up; a frame smeared in
another direction has its zeros elsewhere. The multi-frame Wiener filter

    X = sum_i conj(K_i) Y_i / (sum_i |K_i|^2 + nsr)

recovers from the pair what neither frame gives alone, and averages their noise.

Alignment: the coupon drifts up to about 100 px between frames at 10 fps, while the counter behind
it stays put, so correlating the blurred frames locks onto the counter. Each frame is first
restored on its own (its code's finder patterns and modules come back even when zxing-cpp cannot
decode them); a square of the current restoration around its code is then found in the previous
restoration by normalised cross-correlation, which gives the shift. The small rotation between
frames (a few degrees) is not corrected.

Finding the code: the crop is centred on the square with the most capped edge response
(``code_centre``) and faded outside a disc (``faded_outside``), not by deblur.code_region and
deblur.isolate, whose fixed edge level misses faint codes.

Measured on 90 showings of the motion set's seed 7 (tests/coupons/qr_motionset.py; tuned there),
live reader on one thread: restoring every unread frame alone read 79 % of showings; adding the
pair of each unread frame and the previous one 84 %; centring by ``code_centre`` and reading the
disc-faded frame alone as well 88 % (low contrast 7 -> 9 of 15). Tried and dropped: also fusing
each frame with the one two back, and a three-frame filter (both 88 %, more CPU); centring on
what changed since the previous frame (detail times its change: 81 % against 84 % for the edge
density then; the lighting changes from frame to frame too); aligning by phase correlation of
the blurred or of the restored crops (it locks onto the counter: with the true blurs, 0 and 3 of
the 18 showings of seed 7 that no single frame read were read, against 6 with the template
match). Also no gain (without the frame budget): a 512 px crop (82 %), a wider disc (0.75-1.0),
a third noise ratio 0.03 and a 260 px centre window (88 %), a 120 px template (87 %).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from agent.coupons import deblur

TEMPLATE_PX = 160
"""Side of the square of the current restoration searched for in the previous one: about the
smallest code of the motion set (25-33 modules of 3.5-6.5 px), so that it holds mostly code."""
MIN_MATCH = 0.2
"""Normalised cross-correlation below which the two restorations are taken not to show the same code."""
NOISE_RATIOS = (0.002, 0.01)
"""Tried in turn for the pair: 0.01 reads a few pairs with strong noise that 0.002 does not."""
CENTRE_WINDOW_PX = 200
"""Side of the square searched for the code (a code of the motion set and part of its smear)."""
CENTRE_CAP = 2.0
"""Edge response counted per pixel, in multiples of the frame's median (see code_centre)."""
MOVED_LEVEL = 12
MOVED_FRACTION = 0.01
DISC_INNER, DISC_OUTER = 0.6, 0.95
"""The crop is kept within 0.6 of its half side from the centre and faded out by 0.95."""
_MIN_CAP = 8.0
"""The cap on a frame whose median response is about 0 (a flat, noiseless background)."""
_ALIGN_NOISE_RATIO = 0.01
"""For the restoration used only to align: smoother than a readable one, and so better matched."""
_MAX_CROP = 384
"""The crop around the code: the largest code of the motion set and its smear fit, and each FFT is
about half as costly as on the single-frame restoration's 512 px crop."""


@dataclass(frozen=True)
class Prepared:
    """One frame made ready for fusion: the crop around its code, faded outside the code's disc, its estimated blur's
    kernel, its own restoration (for alignment) and where the code's centre lies in the crop."""

    crop: np.ndarray  # float32, square
    kernel: np.ndarray
    restored: np.ndarray  # float32, same shape as crop
    centre: tuple[int, int]


def code_centre(gray: np.ndarray, window_px: int = CENTRE_WINDOW_PX) -> tuple[int, int]:
    """The centre (x, y) of the ``window_px`` square with the most edge response, each pixel's
    response capped at CENTRE_CAP times the frame's median (on the 2x reduced frame).

    The cap makes the search count dense detail rather than strong edges: a blurred code is
    detail everywhere but may be faint (a faded print, a dimmed screen), while the counter's
    printed text and shapes are strong but sparse. The fixed edge level of deblur.code_region
    misses faint codes: on the motion set's seed 7 (two frames of each of 90 showings) its
    centre was more than 60 px off in 28 % of frames (93 % of low-contrast ones), this one's in
    16 % (50 %)."""
    height, width = gray.shape
    scale = 2
    small = cv2.resize(gray, (width // scale, height // scale), interpolation=cv2.INTER_AREA).astype(np.float32)
    response = np.abs(cv2.Sobel(small, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(small, cv2.CV_32F, 0, 1))
    capped = np.minimum(response, max(CENTRE_CAP * float(np.median(response)), _MIN_CAP))
    side = max(3, window_px // scale | 1)
    _, _, _, (cx, cy) = cv2.minMaxLoc(cv2.blur(capped, (side, side)))
    return cx * scale + scale // 2, cy * scale + scale // 2


def thumbnail(gray: np.ndarray) -> np.ndarray:
    """The frame reduced 8x (area average), to compare consecutive frames cheaply."""
    height, width = gray.shape
    small: np.ndarray = cv2.resize(gray, (max(width // 8, 1), max(height // 8, 1)), interpolation=cv2.INTER_AREA)
    return small


def moved(thumb: np.ndarray, previous: np.ndarray | None) -> bool:
    """Whether something moved between two frames' thumbnails: more than MOVED_FRACTION of their
    pixels changed by more than MOVED_LEVEL. A fixed scanner camera on an idle counter sees only
    noise, which the 8x averaging removes; a coupon waved through the view changes a tenth of it."""
    if previous is None or previous.shape != thumb.shape:
        return True
    changed = np.abs(thumb.astype(np.int16) - previous.astype(np.int16)) > MOVED_LEVEL
    return float(changed.mean()) > MOVED_FRACTION


def prepare(
    gray: np.ndarray, blur: deblur.Blur | None = None, centre: tuple[int, int] | None = None
) -> Prepared | None:
    """The crop around a frame's code (centred on ``centre``, else on ``code_centre``) with its
    blur (estimated from the cepstrum unless given), or None for a frame too small to deblur or
    without a blur estimate."""
    height, width = gray.shape
    if min(height, width) < deblur.MIN_FRAME_SIDE:
        return None
    side = deblur._dft_floor(min(_MAX_CROP, height, width))
    cx, cy = centre if centre is not None else code_centre(gray)
    x = int(np.clip(cx - side // 2, 0, width - side))
    y = int(np.clip(cy - side // 2, 0, height - side))
    crop = gray[y : y + side, x : x + side]
    if blur is None:
        blurs = deblur.estimate_blurs(crop, count=1)
        if not blurs:
            return None
        blur = deblur.Blur(blurs[0].length + deblur.LENGTH_BIAS_PX, blurs[0].angle, blurs[0].depth)
    isolated = faded_outside(crop)
    kernel = deblur.line_kernel(blur)
    restored = wiener_sum([isolated], [kernel], _ALIGN_NOISE_RATIO)
    return Prepared(isolated, kernel, restored, (cx - x, cy - y))


def offset(current: Prepared, previous: Prepared) -> tuple[tuple[int, int], float]:
    """The shift (dx, dy) that moves the previous crop's code onto the current one's, and the
    normalised cross-correlation of the match (1: identical)."""
    side = current.restored.shape[0]
    template = min(TEMPLATE_PX, side // 2)
    tx = int(np.clip(current.centre[0] - template // 2, 0, side - template))
    ty = int(np.clip(current.centre[1] - template // 2, 0, side - template))
    patch = current.restored[ty : ty + template, tx : tx + template]
    if previous.restored.shape[0] < template:
        return (0, 0), 0.0
    scores = cv2.matchTemplate(previous.restored, patch, cv2.TM_CCOEFF_NORMED)
    _, score, _, (mx, my) = cv2.minMaxLoc(scores)
    return (tx - mx, ty - my), float(score)


def shifted(image: np.ndarray, dx: int, dy: int, shape: tuple[int, ...]) -> np.ndarray:
    """``image`` moved by (dx, dy) onto a canvas of ``shape``, the uncovered border filled with its
    mean (the level ``faded_outside`` fades the scene to)."""
    moved = np.full(shape, float(image.mean()), np.float32)
    height, width = shape[:2]
    src_h, src_w = image.shape
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(width, src_w + dx), min(height, src_h + dy)
    if x1 > x0 and y1 > y0:
        moved[y0:y1, x0:x1] = image[y0 - dy : y1 - dy, x0 - dx : x1 - dx]
    return moved


def wiener_sum(crops: list[np.ndarray], kernels: list[np.ndarray], noise_ratio: float) -> np.ndarray:
    """The multi-frame Wiener filter of equally sized float crops, each blurred by its kernel:
    sum_i conj(K_i) Y_i / (sum_i |K_i|^2 + noise_ratio), as float32."""
    shape = crops[0].shape
    numerator: np.ndarray | None = None
    power: np.ndarray | None = None
    for crop, kernel in zip(crops, kernels, strict=True):
        transfer = _transfer(kernel, shape)
        spectrum = np.fft.rfft2(_taper(crop, kernel.shape[0]))
        numerator = np.conj(transfer) * spectrum if numerator is None else numerator + np.conj(transfer) * spectrum
        magnitude = np.abs(transfer) ** 2
        power = magnitude if power is None else power + magnitude
    assert numerator is not None and power is not None
    restored: np.ndarray = np.fft.irfft2(numerator / (power + noise_ratio), s=shape).astype(np.float32)
    return restored


def fused_candidates(current: Prepared, previous: Prepared | None) -> Iterator[np.ndarray]:
    """Restorations of the current frame's code as uint8 crops: from the current frame alone (its
    crop is centred by ``code_centre``, which finds faint codes that the single-frame pass misses),
    then from it and the previous frame, one per noise ratio, unless the two do not seem to show
    the same code."""
    yield deblur._to_uint8(cv2.GaussianBlur(current.restored, (0, 0), deblur.DENOISE_SIGMA))
    if previous is None:
        return
    (dx, dy), score = offset(current, previous)
    if score < MIN_MATCH:
        return
    moved = shifted(previous.crop, dx, dy, current.crop.shape)
    crops, kernels = [current.crop, moved], [current.kernel, previous.kernel]
    for ratio in NOISE_RATIOS:
        restored = wiener_sum(crops, kernels, ratio)
        yield deblur._to_uint8(cv2.GaussianBlur(restored, (0, 0), deblur.DENOISE_SIGMA))


def faded_outside(crop: np.ndarray) -> np.ndarray:
    """The square crop, as float32, faded to its mean outside a disc about its centre.

    The crop is centred on the code (``code_centre``), so a disc keeps the code and its smear
    without looking for them; deblur.isolate fades all but the densest edge patch, which for a
    faint code is the counter's printed text, and the code itself is faded out. With the crop
    centred on the true code centre, a single frame restored with the disc read at least one frame
    in 6 of the 7 low-contrast showings of seed 7 in which no frame was read with deblur.isolate
    (and none of them with isolate and the true centre)."""
    weight = _disc(crop.shape[0])
    data = crop.astype(np.float32)
    fill = float((data * weight).sum() / float(weight.sum()))
    faded: np.ndarray = weight * data + (1 - weight) * fill
    return faded


@functools.lru_cache(maxsize=4)
def _disc(side: int) -> np.ndarray:
    """1 within DISC_INNER of the half side from the centre, falling to 0 at DISC_OUTER."""
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.hypot(xs - side / 2, ys - side / 2) / (side / 2)
    disc: np.ndarray = np.clip((DISC_OUTER - radius) / (DISC_OUTER - DISC_INNER), 0, 1).astype(np.float32)
    return disc


def _transfer(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The kernel's transfer function on a grid of ``shape`` (kernel centred on the origin)."""
    psf = np.zeros(shape[:2], np.float32)
    size = kernel.shape[0]
    psf[:size, :size] = kernel
    psf = np.roll(psf, (-(size // 2), -(size // 2)), axis=(0, 1))
    transfer: np.ndarray = np.fft.rfft2(psf)
    return transfer


def _taper(crop: np.ndarray, pad: int) -> np.ndarray:
    """The crop blended towards its mean within ``pad`` px of its border, so that the periodic
    edge of the FFT does not ring across the code."""
    height, width = crop.shape
    ramp_x = np.clip(np.minimum(np.arange(width) + 1, np.arange(width)[::-1] + 1) / pad, 0, 1)
    ramp_y = np.clip(np.minimum(np.arange(height) + 1, np.arange(height)[::-1] + 1) / pad, 0, 1)
    weight = np.outer(ramp_y, ramp_x).astype(np.float32)
    mean = float(crop.mean())
    tapered: np.ndarray = weight * crop + (1 - weight) * mean
    return tapered
