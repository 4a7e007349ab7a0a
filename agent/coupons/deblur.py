"""Undo the linear motion blur of a coupon moved while shown: find it, measure the smear, deconvolve.

A phone or card moved during the exposure is smeared along a line; its modules run together and
zxing-cpp no longer finds the finder patterns. The blur is nearly a box along one direction, whose
spectrum has regularly spaced zeros; the log spectrum's inverse transform (the cepstrum) then has
a negative peak at the blur's length in its direction. ``deblur_candidates`` yields restored crops,
cheapest and most likely first:

1. The code-like region: the square window of the frame densest in edges (a blurred code keeps
   dense edges across the motion, a counter scene has sparse ones), or one given by the caller.
2. The blur's length and angle: the two deepest minima of the cepstrum of the crop reduced 2x,
   between MIN_BLUR_PX and MAX_BLUR_PX from the origin.
3. First on the crop reduced 2x, with the first estimate: the smear of that blur found and
   everything else faded out (``isolate``: the sharp counter around a moving code rings across it
   when deconvolved), the blur measured again on the faded crop (its cepstrum is clearer), and the
   faded crop deconvolved by a Wiener filter with a line kernel of that length and angle, its
   edges tapered towards its mean; then with that kernel 1.5 frame px shorter and longer.
   Reduced 2x, modules of 3.5-6.5 px become 1.75-3.25 px and blurs of 15-40 px 7.5-20 px, still
   restorable, and the transforms cost a quarter: the first restoration costs about 4 ms of one
   core instead of 15.
4. Then the same at full size for each estimate; once both estimates were tried, the first 1.5 px
   shorter and longer. These read the frames whose reduced restorations did not.
5. Each restoration is cut to the smear and read enlarged 2x and 4x and binarised by a local
   mean (the scanner's ``_restored_variants``).

On the motion set's default seed (tests/coupons/qr_motionset.py, 120 frames) with unlimited time,
the full-size restorations alone read 75 frames (68 with the first one) and the reduced ones
alone 63 (53 with the first one), both 77. Through QrScanner with its default budgets, in one run
on one core, starting with the reduced restorations took the median time per frame from 28.6 to
17.7 ms and read 73 frames instead of 71 (default seed; seed 7: 56.7 % to 59.2 % read, 28.5
to 17.5 ms; seed 11, by tests/benchmarks/bench_motion.py: 62.5 % to 66.7 %, 28.4 to 15.1 ms,
the deblur pass alone from 20.0 to 8.1 ms). The earlier steps (the densest-edge patch faded
instead of the smear, one estimate at full size and no second measure, reads of the uncut crop as
is, enlarged 2x and binarised over 31 px) read 54 frames in 35 ms with unlimited time.

Pure numpy/OpenCV. On a 480 px crop the first reduced restoration costs about 4 ms of one core
(the estimates 1.5, the fade 1.4, the restoration 1.3) and each further length 1.3; a full-size
one about 14 ms, each further one 6-10 ms; the reads 1-5 ms each. The caller keeps the per-frame
time budget and stops as soon as one candidate decodes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

MIN_BLUR_PX = 8
MAX_BLUR_PX = 48
NOISE_RATIOS = (0.002,)
"""Wiener noise-to-signal ratios tried for each kernel, with each restoration also read enlarged and
binarised: over the motion set's default seed and seed 7, 0.002 read 111 of 240 frames and 0.005
108 (0.001 and 0.01 fewer on the default seed)."""
LENGTH_BIAS_PX = -0.5
"""The cepstrum's minimum lies about half a pixel beyond the true length."""
DENOISE_SIGMA = 0.8
"""A light Gaussian blur of the restored crop: amplified noise costs more reads than softness."""
LENGTH_STEPS_PX = (-1.5, 1.5)
"""Offsets from the first estimate's length tried after every estimate (they read a few more frames)."""
REDUCED_LENGTH_BIAS_PX = -1.5
"""The length bias on the crop reduced 2x (frame px): the reduced cepstrum's minimum lies further
beyond the true length. On the motion set's default seed the first reduced restoration read 37
of 120 frames at -0.5, 46 at -1.0, 52 at -1.5 and -2.0 and 40 at -2.5 (with a noise ratio of
0.001; seed 7: 58 at -1.5, 60 at -2.0)."""
REDUCED_NOISE_RATIOS = (0.001,)
"""Wiener noise-to-signal ratios on the reduced crop (averaging 2x2 pixels halves the noise): with
the bias above, 0.001 read 52 frames of the default seed, 0.002 48, 0.005 33 and 0.01 18."""
_MAX_CROP = 512
_EDGE_LEVEL = 40
"""Sobel response (|gx| + |gy| on the 4x reduced frame) counted as an edge. On the motion set's
default seed the code-like region missed part of the code in 12 of 120 frames at 40, 18 at 60 (a
faded code's edges fall below 60 once reduced and the phone's dark rim wins)."""
_NORMALISE_SIGMA_PX = 24.0
_NORMALISE_SPREAD = 48.0
_NORMALISE_FLOOR = 4.0
"""Grey levels added to the local deviation so flat, noisy areas are not stretched to full range."""
_ISOLATE_SCALE = 2
_ISOLATE_WINDOW = 15
"""Side of the window (reduced px) over which ``isolate`` compares gradients along and across the blur."""
_ISOLATE_SOFT_PX = 20.0
"""Gaussian sigma (frame px) of the fade around the smear: 6, 12 and 20 px read 57, 66 and 67 frames."""
_BOX_MARGIN_PX = 32
"""Margin of the restored crop around the smear (zxing-cpp wants a quiet zone around the code):
with unlimited time on the motion set's default seed, 16 px read 59 of 120 frames, 32 px 64 and
the uncut crop 63."""
MIN_FRAME_SIDE = 128
"""Frames smaller than this on either side are not deblurred."""


@dataclass(frozen=True)
class Blur:
    """A linear motion blur: ``length`` px along ``angle`` degrees (image axes, y down)."""

    length: float
    angle: float
    depth: float = 0.0  # the cepstrum's value there: the more negative, the clearer the blur


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for a sharp frame, low for a smeared one."""
    return float(cv2.Laplacian(gray, cv2.CV_32F, ksize=3).var())


def region_sharpness(gray: np.ndarray) -> float:
    """Sharpness of the code-like region of a frame (a moving coupon blurs, the counter does not)."""
    if min(gray.shape) < MIN_FRAME_SIDE:
        return sharpness(gray)
    x, y, side, _ = code_region(gray)
    return sharpness(gray[y : y + side, x : x + side])


def code_region(gray: np.ndarray) -> tuple[int, int, int, float]:
    """The square window (x, y, side) densest in edges, and that density (0-1).

    Motion blur smooths a code only along the motion: across it the module edges stay sharp, so
    a blurred code is still a dense patch of edges, while a counter scene has sparse ones.
    """
    height, width = gray.shape
    side = _crop_side(min(height, width))
    scale = 4
    small = cv2.resize(gray, (width // scale, height // scale), interpolation=cv2.INTER_AREA)
    edges = _edges(small)
    window = max(3, side // scale // 2 | 1)
    density = cv2.blur(edges, (window, window))
    _, best, _, (cx, cy) = cv2.minMaxLoc(density)
    x = int(np.clip(cx * scale + scale // 2 - side // 2, 0, width - side))
    y = int(np.clip(cy * scale + scale // 2 - side // 2, 0, height - side))
    return x, y, side, float(best)


def estimate_blurs(crop: np.ndarray, count: int = 2, shrink: int = 1) -> list[Blur]:
    """The ``count`` most likely linear blurs of a square crop, from its cepstrum's deepest minima,
    measured on the crop reduced ``shrink`` times (in the crop's pixels all the same).

    Reduced 2x, the transforms cost a quarter (1.1 instead of 4.0 ms on a 480 px crop): that is
    precise enough to find the smear (``isolate``) and then measure it on the faded crop at full
    size; on the motion set's default seed either way 97 of 120 blurs were then found within 2 px
    and 4 degrees."""
    if shrink > 1:
        reduced = crop.shape[0] // shrink
        small = cv2.resize(crop, (reduced, reduced), interpolation=cv2.INTER_AREA)
        return [Blur(blur.length * shrink, blur.angle, blur.depth) for blur in _cepstrum_minima(small, count, shrink)]
    return _cepstrum_minima(crop, count, 1)


def _cepstrum_minima(crop: np.ndarray, count: int, shrink: int) -> list[Blur]:
    """The ``count`` deepest minima of a square crop's cepstrum between MIN_BLUR_PX and
    MAX_BLUR_PX (divided by ``shrink``) from its origin."""
    side = crop.shape[0]
    data = (crop.astype(np.float32) - float(crop.mean())) * _hanning(side)
    spectrum = cv2.dft(data, flags=cv2.DFT_COMPLEX_OUTPUT)
    log_magnitude = cv2.log(cv2.magnitude(spectrum[:, :, 0], spectrum[:, :, 1]) + 1e-3)
    # the log spectrum is real and even: its transform is real and, up to a scale that the
    # normalisation below removes, the cepstrum; only the part within MAX_BLUR_PX is kept
    transformed = cv2.dft(log_magnitude, flags=cv2.DFT_COMPLEX_OUTPUT)
    reach = min(MAX_BLUR_PX // shrink + 2, side // 2 - 1)
    near = np.arange(-reach, reach + 1) % side
    patch = transformed[np.ix_(near, near, (0,))][:, :, 0]
    xs, ys, valid = _cepstrum_grid(reach, MIN_BLUR_PX / shrink, MAX_BLUR_PX / shrink)
    ring = patch[valid]
    patch = (patch - float(np.median(ring))) / max(float(ring.std()), 1e-9)  # depth in standard deviations
    scores = np.where(valid, patch, np.inf)
    blurs: list[Blur] = []
    for _ in range(count):
        flat = int(np.argmin(scores))
        if not np.isfinite(scores.flat[flat]):
            break
        dy, dx = divmod(flat, scores.shape[1])
        dx, dy = dx - reach, dy - reach
        depth = float(scores.flat[flat])
        blurs.append(Blur(float(math.hypot(dx, dy)), math.degrees(math.atan2(dy, dx)) % 180, depth))
        close = (xs - dx) ** 2 + (ys - dy) ** 2 <= 36
        mirror = (xs + dx) ** 2 + (ys + dy) ** 2 <= 36
        scores[close | mirror] = np.inf
    return blurs


@functools.cache
def _hanning(side: int) -> np.ndarray:
    """The 2-D Hann window of a square crop (computed once per side)."""
    window: np.ndarray = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    return window


@functools.cache
def _cepstrum_grid(reach: int, shortest: float, longest: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets x, y around the cepstrum's origin and where a blur may lie (one half: it is symmetric)."""
    ys, xs = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    radius = np.hypot(xs, ys)
    valid = (radius >= shortest) & (radius <= longest) & (ys >= 0)
    return xs, ys, valid


def line_kernel(blur: Blur) -> np.ndarray:
    """A normalised, anti-aliased line kernel of the blur (odd square size)."""
    size = math.ceil(blur.length) | 1
    size += 2
    supersample = 8
    big = np.zeros((size * supersample, size * supersample), np.float32)
    centre = size * supersample / 2
    half = blur.length * supersample / 2
    dx, dy = math.cos(math.radians(blur.angle)) * half, math.sin(math.radians(blur.angle)) * half
    cv2.line(
        big,
        (round(centre - dx), round(centre - dy)),
        (round(centre + dx), round(centre + dy)),
        1.0,
        supersample,
    )
    kernel = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)
    total = float(kernel.sum())
    if total <= 0:
        kernel[size // 2, size // 2] = 1.0
        return kernel
    result: np.ndarray = kernel / total
    return result


def wiener(
    crop: np.ndarray,
    kernels: list[np.ndarray],
    noise_ratios: tuple[float, ...] = NOISE_RATIOS,
    denoise_sigma: float = DENOISE_SIGMA,
) -> Iterator[np.ndarray]:
    """The crop deconvolved with each kernel in turn, once per noise-to-signal ratio, as uint8
    images. The crop's taper and spectrum are computed once for all kernels (they cost about as
    much as the rest of a restoration)."""
    height, width = crop.shape
    data = crop.astype(np.float32)
    # taper: blend towards the crop's mean near the border so the periodic edge does not ring
    # (``isolate`` has already faded all but the code's smear to about that level)
    weight = _taper(height, width, max(kernel.shape[0] for kernel in kernels))
    data = (weight * data + (1 - weight) * float(data.mean())).astype(np.float32)
    image_f = cv2.dft(data, flags=cv2.DFT_COMPLEX_OUTPUT)
    for kernel in kernels:
        k = kernel.shape[0]
        psf = np.zeros((height, width), np.float32)
        psf[:k, :k] = kernel
        psf = np.roll(psf, (-(k // 2), -(k // 2)), axis=(0, 1))
        psf_f = cv2.dft(psf, flags=cv2.DFT_COMPLEX_OUTPUT)
        power = psf_f[:, :, 0] ** 2 + psf_f[:, :, 1] ** 2
        numerator = cv2.mulSpectrums(image_f, psf_f, 0, conjB=True)
        for ratio in noise_ratios:
            restored_f = numerator / (power + ratio)[:, :, None]
            restored = cv2.idft(restored_f, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
            if denoise_sigma > 0:
                restored = cv2.GaussianBlur(restored, (0, 0), denoise_sigma)
            yield _to_uint8(restored)


@functools.cache
def _taper(height: int, width: int, pad: int) -> np.ndarray:
    """Weights rising linearly from 0 at the border to 1 at ``pad`` px inside it."""
    ramp = np.minimum(np.arange(width) + 1, np.arange(width)[::-1] + 1) / pad
    ramp_y = np.minimum(np.arange(height) + 1, np.arange(height)[::-1] + 1) / pad
    weight: np.ndarray = np.outer(np.clip(ramp_y, 0, 1), np.clip(ramp, 0, 1)).astype(np.float32)
    return weight


def deblur_candidates(gray: np.ndarray, region: tuple[int, int, int] | None = None) -> Iterator[np.ndarray]:
    """Restored crops of the code-like region of a gray frame, most likely first (see module doc):
    the first estimate restored on the crop reduced 2x (returned at that size), then every
    estimate at full size."""
    x, y, side = region if region is not None else code_region(gray)[:3]
    crop = gray[y : y + side, x : x + side]
    reduced = cv2.resize(crop, (side // 2, side // 2), interpolation=cv2.INTER_AREA)
    found = _cepstrum_minima(reduced, 2, 2)  # lengths in the reduced crop's pixels
    # the first estimate's smear is found on the same grid at both sizes: found once
    first_smear = _smear(reduced, found[0], 2) if found else None
    if found:
        yield from _restorations(reduced, found[0], 2, LENGTH_STEPS_PX, first_smear)
    later: list[Iterator[np.ndarray]] = []
    for rank, blur in enumerate(found):
        # the cepstrum's minimum is off by a pixel or two on noisy or tilted codes: once both
        # estimates were tried, the first a little shorter and longer, on the same faded crop and
        # spectrum (on the motion set's default seed these read 2 more frames, the second
        # estimate shorter and longer none)
        steps = LENGTH_STEPS_PX if rank == 0 else ()
        full = Blur(blur.length * 2, blur.angle, blur.depth)
        restorations = _restorations(crop, full, 1, steps, first_smear if rank == 0 else None)
        yield next(restorations)
        later.append(restorations)
    for restorations in later:
        yield from restorations


def _restorations(
    work: np.ndarray, blur: Blur, scale: int, steps: tuple[float, ...], smear: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """The crop ``work`` (the code-like region reduced ``scale`` times; ``blur`` in its pixels)
    faded around the smear, the blur measured again on it, deconvolved with that length and then
    with the length moved by each of ``steps`` (frame px), each cut to the smear. ``smear``: the
    blur's smear (``_smear``) if already found."""
    if smear is None:
        smear = _smear(work, blur, scale)
    faded, box = _fade(work, smear, _ISOLATE_SCALE // scale)
    # the faded crop's cepstrum is clearer: the sharp scene it hid has no spectral zeros
    refined = _cepstrum_minima(faded, 1, scale)
    chosen = refined[0] if refined else blur
    length = chosen.length + (LENGTH_BIAS_PX if scale == 1 else REDUCED_LENGTH_BIAS_PX) / scale
    shortest = MIN_BLUR_PX / 2 / scale
    lengths = [length] + [length + step / scale for step in steps if length + step / scale >= shortest]
    kernels = [line_kernel(Blur(each, chosen.angle)) for each in lengths]
    ratios = NOISE_RATIOS if scale == 1 else REDUCED_NOISE_RATIOS
    return _cut(wiener(faded, kernels, ratios, DENOISE_SIGMA / scale), box)


def _cut(restorations: Iterator[np.ndarray], box: tuple[int, int, int, int]) -> Iterator[np.ndarray]:
    """Each restored crop cut to the smear's box: the faded scene around it holds no code, and
    the enlarged reads cost about its area."""
    x, y, width, height = box
    for restored in restorations:
        yield np.ascontiguousarray(restored[y : y + height, x : x + width])


def isolate(crop: np.ndarray, blur: Blur, scale: int = 1) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The crop with everything but the smear of ``blur`` faded to the smear's mean, and the box
    (x, y, width, height) of the smear grown by _BOX_MARGIN_PX. A crop already reduced ``scale``
    times (``blur`` in its pixels) is reduced that much less: the smear is found on the same grid.

    The counter around a moving coupon is sharp, and deconvolving a sharp edge rings into ghost
    copies along the blur, across the code. A smeared patch varies little along the blur and much
    across it, while a sharp edge varies along it as much (a barcode's bars across the motion, more):
    the smear is the largest patch, on the 2x reduced crop, where the local mean of the gradient
    across the blur exceeds twice that along it and a quarter of its 99th percentile. That patch is
    grown by the blur's line (its ends ramp gently) and a disk, then softened widely: a sharp fade
    rings as much as the scene it hides. With the true blur of the motion set's default seed this
    read 67 of 120 frames, the densest-edge patch it replaced 53.
    """
    return _fade(crop, _smear(crop, blur, scale), _ISOLATE_SCALE // scale)


def _smear(crop: np.ndarray, blur: Blur, scale: int) -> np.ndarray:
    """The grown smear of ``isolate`` on the crop reduced _ISOLATE_SCALE times in all (uint8 0/1)."""
    height, width = crop.shape
    step = _ISOLATE_SCALE // scale  # the crop is already reduced ``scale`` times
    if step > 1:
        small = cv2.resize(crop, (width // step, height // step), interpolation=cv2.INTER_AREA).astype(np.float32)
    else:
        small = crop.astype(np.float32)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
    cos, sin = math.cos(math.radians(blur.angle)), math.sin(math.radians(blur.angle))
    window = (_ISOLATE_WINDOW, _ISOLATE_WINDOW)
    along = cv2.blur(np.abs(gx * cos + gy * sin), window)
    across = cv2.blur(np.abs(gy * cos - gx * sin), window)
    smear = ((across > 2 * along) & (across > 0.25 * float(np.percentile(across, 99)))).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(smear)
    if count > 1:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        smear = (labels == largest).astype(np.uint8)
    line = (line_kernel(Blur(blur.length / step, blur.angle)) > 0).astype(np.uint8)
    grown: np.ndarray = cv2.dilate(cv2.dilate(smear, line), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    return grown


def _fade(crop: np.ndarray, grown: np.ndarray, step: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The crop faded outside the smear ``grown`` (found on the crop reduced ``step`` times), and
    the smear's box in the crop's pixels (see ``isolate``)."""
    height, width = crop.shape
    # the wide Gaussian runs on a grid reduced 4x: 4x cheaper, and the fade is smooth at that scale
    coarse_step = 4 // _ISOLATE_SCALE
    coarse = cv2.resize(
        grown.astype(np.float32),
        (grown.shape[1] // coarse_step, grown.shape[0] // coarse_step),
        interpolation=cv2.INTER_AREA,
    )
    soft = cv2.GaussianBlur(coarse, (0, 0), _ISOLATE_SOFT_PX / 4)
    weight = cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)
    data = crop.astype(np.float32)
    fill = float((data * weight).sum() / max(float(weight.sum()), 1.0))
    result: np.ndarray = weight * data + (1 - weight) * fill
    bx, by, bw, bh = cv2.boundingRect(grown)
    margin = _BOX_MARGIN_PX // _ISOLATE_SCALE
    left, top = max(bx - margin, 0), max(by - margin, 0)
    right, bottom = min(bx + bw + margin, grown.shape[1]), min(by + bh + margin, grown.shape[0])
    box = (left * step, top * step, (right - left) * step, (bottom - top) * step)
    return result, box


def streak_region(gray: np.ndarray) -> tuple[int, int, int, float]:
    """The square window (x, y, side) highest in edge density times gradient coherence, and that
    score (0-1): a second look for a faint code that ``code_region``'s density misses.

    A code smeared along one line has its edges across the motion: within its window the
    gradients share one orientation (coherence, from the structure tensor, near 1), while a
    counter's text and shapes turn every way. Coherence is a ratio of gradient energies, so it does
    not fade with the print's contrast as the count of edges above _EDGE_LEVEL does.
    """
    height, width = gray.shape
    side = _crop_side(min(height, width))
    scale = 4
    small = cv2.resize(gray, (width // scale, height // scale), interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(small, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_32F, 0, 1)
    window = (max(3, side // scale // 2 | 1),) * 2
    xx, yy, xy = cv2.blur(gx * gx, window), cv2.blur(gy * gy, window), cv2.blur(gx * gy, window)
    coherence = cv2.sqrt((xx - yy) ** 2 + 4 * xy * xy) / (xx + yy + 1e-3)
    edges = ((np.abs(gx) + np.abs(gy)) > _EDGE_LEVEL).astype(np.float32)
    score = cv2.blur(edges, window) * coherence
    _, best, _, (cx, cy) = cv2.minMaxLoc(score)
    x = int(np.clip(cx * scale + scale // 2 - side // 2, 0, width - side))
    y = int(np.clip(cy * scale + scale // 2 - side // 2, 0, height - side))
    return x, y, side, float(best)


def normalise_contrast(gray: np.ndarray) -> np.ndarray:
    """The image minus its local mean, divided by its local standard deviation (both Gaussian over
    _NORMALISE_SIGMA_PX), as uint8 around 128 with one deviation _NORMALISE_SPREAD grey levels.

    A faded print or dimmed screen spans a few dozen grey levels under uneven light, next to a
    counter and a phone rim of full contrast; the restoration then spends its levels on those.
    Equalised, the smear's modulation stands out as much as the rim's. The local statistics vary
    slowly, so the blur stays nearly linear. They are computed on the image reduced 4x (the
    Gaussian costs a sixteenth) and enlarged again.
    """
    height, width = gray.shape
    data = gray.astype(np.float32)
    small = cv2.resize(data, (max(width // 4, 1), max(height // 4, 1)), interpolation=cv2.INTER_AREA)
    sigma = _NORMALISE_SIGMA_PX / 4
    mean_small = cv2.GaussianBlur(small, (0, 0), sigma)
    square_small = cv2.GaussianBlur(small * small, (0, 0), sigma)
    mean = cv2.resize(mean_small, (width, height), interpolation=cv2.INTER_LINEAR)
    spread = cv2.resize(
        cv2.sqrt(np.maximum(square_small - mean_small * mean_small, 0)), (width, height), interpolation=cv2.INTER_LINEAR
    )
    scaled = (data - mean) * (_NORMALISE_SPREAD / (spread + _NORMALISE_FLOOR)) + 128
    result: np.ndarray = np.clip(scaled, 0, 255).astype(np.uint8)
    return result


def _edges(small: np.ndarray) -> np.ndarray:
    """1.0 where the Sobel response of a reduced gray image exceeds _EDGE_LEVEL, else 0.0."""
    gx = cv2.Sobel(small, cv2.CV_16S, 1, 0)
    gy = cv2.Sobel(small, cv2.CV_16S, 0, 1)
    edges: np.ndarray = ((np.abs(gx) + np.abs(gy)) > _EDGE_LEVEL).astype(np.float32)
    return edges


def _crop_side(shortest: int) -> int:
    """A DFT-friendly square side: about the shorter frame side, at most _MAX_CROP."""
    return _dft_floor(min(shortest, _MAX_CROP))


def _dft_floor(side: int) -> int:
    """The largest DFT-friendly size (products of 2, 3, 5) not above ``side``."""
    for candidate in range(side, 0, -1):
        n = candidate
        for factor in (2, 3, 5):
            while n % factor == 0:
                n //= factor
        if n == 1:
            return candidate
    return side


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Stretch a restored float image to 0-255 between the 1st and 99th percentiles of its middle
    (every 4th pixel of it: the levels are as good and the sort 4x cheaper)."""
    height, width = image.shape
    middle = image[height // 4 : height - height // 4 : 4, width // 4 : width - width // 4 : 4].ravel()
    last = middle.size - 1
    low, high = (
        float(v) for v in np.partition(middle, (last // 100, last - last // 100))[[last // 100, last - last // 100]]
    )
    if high - low < 1e-3:
        high = low + 1
    scaled = image * (255.0 / (high - low)) - low * 255.0 / (high - low)
    result: np.ndarray = cv2.convertScaleAbs(np.maximum(scaled, 0, out=scaled))  # saturates above 255
    return result
