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

Measured on 90 showings of the motion set's seed 7 (tests/coupons/qr_motionset.py), on the 18
showings in which no frame was read by the single-frame restoration with every candidate: fusing
each frame with the previous one read 5 of them with the cepstrum's blur estimates (6 with the
true blurs); fusing three frames read fewer (5 with the true blurs: the rotation between the
first and the third frame blurs the sum).
"""

from __future__ import annotations

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
_ALIGN_NOISE_RATIO = 0.01
"""For the restoration used only to align: smoother than a readable one, and so better matched."""
_MAX_CROP = 384
"""The crop around the code: the largest code of the motion set and its smear fit, and each FFT is
about half as costly as on the single-frame restoration's 512 px crop."""


@dataclass(frozen=True)
class Prepared:
    """One frame made ready for fusion: the crop around its code, isolated, its estimated blur's
    kernel, its own restoration (for alignment) and where the code's centre lies in the crop."""

    crop: np.ndarray  # float32, square
    kernel: np.ndarray
    restored: np.ndarray  # float32, same shape as crop
    centre: tuple[int, int]


def code_centre(gray: np.ndarray, window_px: int = TEMPLATE_PX) -> tuple[int, int]:
    """The centre (x, y) of the ``window_px`` square densest in edges: a blurred code keeps its
    edges across the motion, a counter has sparser ones (see deblur.code_region)."""
    height, width = gray.shape
    scale = 4
    small = cv2.resize(gray, (width // scale, height // scale), interpolation=cv2.INTER_AREA)
    side = max(3, window_px // scale | 1)
    density = cv2.blur(deblur._edges(small), (side, side))
    _, _, _, (cx, cy) = cv2.minMaxLoc(density)
    return cx * scale + scale // 2, cy * scale + scale // 2


def prepare(gray: np.ndarray, blur: deblur.Blur | None = None) -> Prepared | None:
    """The crop around a frame's code with its blur (estimated from the cepstrum unless given),
    or None for a frame too small to deblur or without a blur estimate."""
    height, width = gray.shape
    if min(height, width) < deblur.MIN_FRAME_SIDE:
        return None
    side = deblur._dft_floor(min(_MAX_CROP, height, width))
    cx, cy = code_centre(gray)
    x = int(np.clip(cx - side // 2, 0, width - side))
    y = int(np.clip(cy - side // 2, 0, height - side))
    crop = gray[y : y + side, x : x + side]
    if blur is None:
        blurs = deblur.estimate_blurs(crop, count=1)
        if not blurs:
            return None
        blur = deblur.Blur(blurs[0].length + deblur.LENGTH_BIAS_PX, blurs[0].angle, blurs[0].depth)
    isolated = deblur.isolate(crop, blur).astype(np.float32)
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
    mean (the level ``isolate`` fades the scene to)."""
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


def fused_candidates(current: Prepared, previous: Prepared) -> Iterator[np.ndarray]:
    """Restorations of the current frame's code from it and the previous frame, as uint8 crops,
    one per noise ratio; nothing when the two do not seem to show the same code."""
    (dx, dy), score = offset(current, previous)
    if score < MIN_MATCH:
        return
    moved = shifted(previous.crop, dx, dy, current.crop.shape)
    crops, kernels = [current.crop, moved], [current.kernel, previous.kernel]
    for ratio in NOISE_RATIOS:
        restored = wiener_sum(crops, kernels, ratio)
        yield deblur._to_uint8(cv2.GaussianBlur(restored, (0, 0), deblur.DENOISE_SIGMA))


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
