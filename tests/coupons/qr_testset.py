"""Seeded synthetic kiosk-camera frames, each holding one coupon QR code with labelled degradations.

A sample is a paper coupon or a phone screen seen by a camera 30-60 cm away: the code is rendered
with segno at error correction M (a C1 token fills a version-6 symbol, 41x41 modules), laid on a
card, projected into a cluttered scene through a camera model (rotation, tilt, position), and then
put through the optics and sensor: pixel integration, defocus or motion blur, sensor noise, JPEG.

Difficulty is kept honest: the code always has at least 2 px per module (at least 82 px wide),
defocus blur stays within what an autofocus camera gives (sigma <= 1.5 px and <= 0.45 module),
motion blur is never longer than ~1.2 modules, foreshortening leaves >= 2 px per module along the
tilted axis, and glare saturates only a small patch (error correction M restores ~15 %).

    samples = make_testset(400)            # or make_sample(index) for one frame
    samples[0].image, samples[0].text, samples[0].labels
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import segno

from agent.coupons import base45

DEFAULT_SEED = 20240917
SIZES = ((640, 480), (1280, 720))
TOKEN_BYTES = 34 + 64  # payload and Ed25519 signature: "C1:" + 147 base45 characters

LABELS = (
    "small_modules",
    "perspective",
    "rotation",
    "blur",
    "motion_blur",
    "noise",
    "jpeg",
    "low_contrast",
    "glare",
    "inverted",
)
"""Degradation labels; a sample with none of them is labelled "clean"."""

_RENDER_PX = 8  # card pixels per module before projection


@dataclass(frozen=True)
class Sample:
    """One synthetic frame and what a reader should find in it."""

    index: int
    image: np.ndarray  # BGR uint8
    text: str
    labels: tuple[str, ...]
    size: tuple[int, int]  # width, height
    module_px: float  # pixels per module in the frame, before foreshortening
    medium: str  # "paper" or "phone"


def token_text(rng: np.random.Generator) -> str:
    """A token-shaped text: "C1:" and the base45 of 98 random bytes (the length of a real token)."""
    return "C1:" + base45.encode(rng.bytes(TOKEN_BYTES))


def qr_matrix(text: str) -> np.ndarray:
    """The symbol's modules (True = dark) at error correction M, without quiet zone."""
    qr = segno.make_qr(text, error="m", boost_error=False)
    return np.array(list(qr.matrix_iter(scale=1, border=0)), dtype=bool)


def make_testset(count: int = 400, seed: int = DEFAULT_SEED) -> list[Sample]:
    """``count`` samples; sample i is the same whatever the count."""
    return [make_sample(index, seed) for index in range(count)]


def make_sample(index: int, seed: int = DEFAULT_SEED) -> Sample:
    """The sample at ``index`` of the seeded sequence."""
    rng = np.random.default_rng((seed, index))
    width, height = SIZES[int(rng.integers(len(SIZES)))]
    text = token_text(rng)
    labels: list[str] = []

    medium = "phone" if rng.random() < 0.35 else "paper"
    inverted = medium == "phone" and rng.random() < 0.2
    low_contrast = rng.random() < 0.2
    card, code_box = _card(qr_matrix(text), medium, inverted, low_contrast, rng)
    if inverted:
        labels.append("inverted")
    if low_contrast:
        labels.append("low_contrast")

    perspective = rng.random() < 0.35
    rotation = rng.random() < 0.4
    motion = rng.random() < 0.2
    small = not motion and rng.random() < 0.3
    module_px = float(rng.uniform(2.0, 3.0) if small else rng.uniform(3.0, 7.0))
    if small:
        labels.append("small_modules")
    if rotation:
        angle = float(rng.uniform(-180, 180))
        while _off_axis(angle) < 10:
            angle = float(rng.uniform(-180, 180))
        labels.append("rotation")
    else:
        angle = float(rng.uniform(-8, 8))
    tilt_limit = math.degrees(math.acos(min(1.0, 2.0 / module_px)))
    if perspective and tilt_limit >= 15:
        tilt = float(rng.uniform(15, min(45, tilt_limit)))
        labels.append("perspective")
    else:
        tilt = float(rng.uniform(0, min(10, tilt_limit)))
    tilt_axis = float(rng.uniform(0, 2 * math.pi))

    frame = background(width, height, rng)
    homography = _placement(card.shape, code_box, module_px, angle, tilt, tilt_axis, width, height, rng)
    frame = _composite(frame, card, homography, module_px)
    frame *= _illumination(width, height, rng)

    if rng.random() < 0.2:
        frame = _glare(frame, homography, code_box, rng)
        labels.append("glare")
    foreshortened = module_px * math.cos(math.radians(tilt))
    if rng.random() < 0.3:
        sigma = float(rng.uniform(0.8, max(0.81, min(1.5, 0.45 * foreshortened))))
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
        labels.append("blur")
    if motion:
        length = float(rng.uniform(2.5, max(2.6, min(8.0, 1.2 * foreshortened))))
        frame = cv2.filter2D(frame, -1, _motion_kernel(length, float(rng.uniform(0, 180))))
        labels.append("motion_blur")
    noise_sigma = float(rng.uniform(4, 12)) if rng.random() < 0.3 else float(rng.uniform(0.5, 2.0))
    if noise_sigma >= 4:
        labels.append("noise")
    frame += noise_sigma * rng.standard_normal(frame.shape, dtype=np.float32)
    image = np.clip(frame, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        quality = int(rng.integers(25, 66))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
        labels.append("jpeg")

    ordered = tuple(label for label in LABELS if label in labels) or ("clean",)
    return Sample(index, image, text, ordered, (width, height), module_px, medium)


def render_code(text: str, module_px: int = 4, border: int = 4) -> np.ndarray:
    """A plain gray image of the code: black modules on white, ``border`` quiet-zone modules."""
    matrix = np.pad(qr_matrix(text), border)
    image = np.where(matrix, 0, 255).astype(np.uint8)
    return np.kron(image, np.ones((module_px, module_px), dtype=np.uint8))


def empty_frame(width: int, height: int, seed: int = DEFAULT_SEED) -> np.ndarray:
    """A cluttered BGR scene like the samples' backgrounds, with no QR code in it."""
    rng = np.random.default_rng((seed, width, height))
    return np.clip(background(width, height, rng), 0, 255).astype(np.uint8)


def _off_axis(angle: float) -> float:
    """Degrees between ``angle`` and the nearest multiple of 90."""
    rest = angle % 90
    return min(rest, 90 - rest)


def _card(
    matrix: np.ndarray, medium: str, inverted: bool, low_contrast: bool, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The coupon card (paper or phone) in BGR float at _RENDER_PX per module, and the code's box."""
    modules = matrix.shape[0]
    if medium == "paper":
        quiet = 4
        left, right = rng.integers(3, 10, size=2)
        top, bottom = int(rng.integers(8, 16)), int(rng.integers(3, 10))
        light, dark = float(rng.uniform(200, 245)), float(rng.uniform(15, 55))
    else:
        quiet = int(rng.integers(2, 5))
        left, right = rng.integers(1, 4, size=2)
        top, bottom = int(rng.integers(10, 22)), int(rng.integers(8, 20))
        light, dark = float(rng.uniform(225, 255)), float(rng.uniform(0, 25))
    if inverted:
        light, dark = float(rng.uniform(15, 45)), float(rng.uniform(190, 235))
    if low_contrast:
        middle, span = float(rng.uniform(100, 165)), float(rng.uniform(40, 75))
        light, dark = (middle + span / 2, middle - span / 2)
        if inverted:
            light, dark = dark, light
    grid_w = int(left + quiet + modules + quiet + right)
    grid_h = int(top + quiet + modules + quiet + bottom)
    card = np.full((grid_h * _RENDER_PX, grid_w * _RENDER_PX), round(light), dtype=np.uint8)
    x0, y0 = int(left + quiet), int(top + quiet)
    cells = np.where(matrix, round(dark), round(light)).astype(np.uint8)
    code = np.kron(cells, np.ones((_RENDER_PX, _RENDER_PX), dtype=np.uint8))
    card[y0 * _RENDER_PX : (y0 + modules) * _RENDER_PX, x0 * _RENDER_PX : (x0 + modules) * _RENDER_PX] = code
    ink = round(dark)
    scale = _RENDER_PX / 8
    if medium == "paper":
        for line in range(int(rng.integers(1, 3))):
            words = ("SAVE 20%", "2 FOR 1", "COUPON", "-15% COFFEE", "FREE BAG", "VALID TO 31/12")
            word = words[int(rng.integers(len(words)))]
            origin = (int(left * _RENDER_PX), int((3 + 4 * line) * _RENDER_PX))
            cv2.putText(card, word, origin, cv2.FONT_HERSHEY_SIMPLEX, 1.2 * scale, ink, int(2 * scale))
    else:
        bar = int(3 * _RENDER_PX)
        card[:bar, :] = round(light * 0.9 + dark * 0.1)
        cv2.putText(card, "Wallet", (bar, int(2 * _RENDER_PX)), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, 1)
        border = int(rng.integers(2, 4)) * _RENDER_PX
        card = cv2.copyMakeBorder(card, border, border, border, border, cv2.BORDER_CONSTANT, value=12)
        x0 += border // _RENDER_PX
        y0 += border // _RENDER_PX
    tint = np.array(rng.uniform(0.9, 1.0, 3), dtype=np.float32)
    tint /= tint.max()
    coloured = card.astype(np.float32)[:, :, None] * tint[None, None, :]
    box = (float(x0 - quiet), float(y0 - quiet), float(modules + 2 * quiet), float(modules + 2 * quiet))
    x, y, w, h = (value * _RENDER_PX for value in box)
    return coloured, (x, y, w, h)


def _placement(
    card_shape: tuple[int, ...],
    code_box: tuple[float, float, float, float],
    module_px: float,
    angle: float,
    tilt: float,
    tilt_axis: float,
    width: int,
    height: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Homography from card pixels to frame pixels: a pinhole camera looking at the tilted card."""
    bx, by, bw, bh = code_box
    centre = np.array([bx + bw / 2, by + bh / 2])
    focal = 0.9 * width  # about 58 degrees horizontal field of view
    zoom = module_px / _RENDER_PX
    turn = math.radians(angle)
    spin = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    axis = np.array([math.cos(tilt_axis), math.sin(tilt_axis), 0.0])
    rotation, _ = cv2.Rodrigues(axis * math.radians(tilt))

    def project(points: np.ndarray) -> np.ndarray:
        flat = (points - centre) * zoom @ spin.T
        space = np.column_stack([flat, np.zeros(len(flat))]) @ rotation.T
        depth = focal + space[:, 2]
        return focal * space[:, :2] / depth[:, None]

    box = np.array([[bx, by], [bx + bw, by], [bx + bw, by + bh], [bx, by + bh]])
    projected = project(box)
    low, high = projected.min(axis=0), projected.max(axis=0)
    margin = 6
    span_x = (width - margin - high[0]) - (margin - low[0])
    span_y = (height - margin - high[1]) - (margin - low[1])
    shift = np.array(
        [
            margin - low[0] + rng.uniform(0, max(span_x, 0)),
            margin - low[1] + rng.uniform(0, max(span_y, 0)),
        ]
    )
    source = np.array([[0, 0], [card_shape[1], 0], [card_shape[1], card_shape[0]], [0, card_shape[0]]], float)
    source = np.vstack([box, source])
    target = project(source) + shift
    matrix, _ = cv2.findHomography(source.astype(np.float32), target.astype(np.float32))
    return matrix


def _composite(frame: np.ndarray, card: np.ndarray, homography: np.ndarray, module_px: float) -> np.ndarray:
    """Project the card into the frame, integrating over each camera pixel (anti-aliased)."""
    sigma = 0.45 * _RENDER_PX / module_px
    soft = cv2.GaussianBlur(card, (0, 0), sigma)
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpPerspective(soft, homography, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones(card.shape[:2], np.float32), homography, size, flags=cv2.INTER_LINEAR)
    return frame * (1 - mask[:, :, None]) + warped * mask[:, :, None]


def background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A cluttered counter scene: lit gradient, texture, shapes, print and barcode-like stripes."""
    low = rng.uniform(40, 200, 3)
    high = rng.uniform(40, 220, 3)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    frame = np.broadcast_to(low + (high - low) * ramp, (height, width, 3)).astype(np.float32).copy()
    coarse = cv2.resize(rng.normal(0, 25, (6, 8, 3)).astype(np.float32), (width, height))
    fine = cv2.GaussianBlur(30 * rng.standard_normal((height, width), dtype=np.float32), (0, 0), 1.5)
    frame += coarse + fine[:, :, None]
    canvas = np.clip(frame, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(15, 40))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = int(rng.integers(4))
        x, y = int(rng.integers(width)), int(rng.integers(height))
        size = int(rng.integers(10, max(11, width // 4)))
        thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, 6))
        if kind == 0:
            cv2.rectangle(canvas, (x, y), (x + size, y + int(size * rng.uniform(0.3, 1.5))), colour, thickness)
        elif kind == 1:
            cv2.circle(canvas, (x, y), size // 2, colour, thickness)
        elif kind == 2:
            end = (x + int(rng.integers(-size, size)), y + int(rng.integers(-size, size)))
            cv2.line(canvas, (x, y), end, colour, int(rng.integers(1, 8)), cv2.LINE_AA)
        else:
            axes = (size // 2, int(size * rng.uniform(0.2, 0.6)))
            cv2.ellipse(canvas, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, thickness)
    words = ("SALE", "OPEN", "Milk 1L", "BREAD", "49.90", "Thank you", "EXIT", "Organic", "CHECKOUT")
    for _ in range(int(rng.integers(5, 15))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        origin = (int(rng.integers(width)), int(rng.integers(height)))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX]))
        word = words[int(rng.integers(len(words)))]
        cv2.putText(canvas, word, origin, font, float(rng.uniform(0.5, 2.5)), colour, int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(0, 3))):
        _stripes(canvas, rng)
    return canvas.astype(np.float32)


def _stripes(frame: np.ndarray, rng: np.random.Generator) -> None:
    """A linear barcode on some packaging (a distractor with sharp dark/light edges)."""
    height, width = frame.shape[:2]
    bars = rng.integers(1, 4, size=60)
    x = int(rng.integers(0, max(1, width - 200)))
    y = int(rng.integers(0, max(1, height - 60)))
    frame[y : y + 50, x : x + int(bars.sum()) * 2 + 10] = 235
    position = x + 5
    for count, bar in enumerate(bars):
        if count % 2 == 0:
            frame[y + 5 : y + 45, position : position + 2 * int(bar)] = 20
        position += 2 * int(bar)


def _illumination(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Uneven store lighting: a smooth gain field between about 0.75 and 1.15."""
    field = cv2.resize(rng.uniform(0.75, 1.15, (3, 4)).astype(np.float32), (width, height))
    return field[:, :, None]


def _glare(
    frame: np.ndarray,
    homography: np.ndarray,
    code_box: tuple[float, float, float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """A bright elliptical highlight (a lamp on glossy paper or glass) over part of the code."""
    bx, by, bw, bh = code_box
    corners = np.array([[[bx, by]], [[bx + bw, by]], [[bx + bw, by + bh]], [[bx, by + bh]]], np.float32)
    placed = cv2.perspectiveTransform(corners, homography).reshape(4, 2)
    centre = placed.mean(axis=0)
    side = float(np.linalg.norm(placed[1] - placed[0]) + np.linalg.norm(placed[3] - placed[0])) / 2
    spot = centre + rng.uniform(-0.3, 0.3, 2) * side
    sx, sy = rng.uniform(0.08, 0.22) * side, rng.uniform(0.05, 0.15) * side
    turn = math.radians(float(rng.uniform(0, 180)))
    height, width = frame.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs - spot[0], ys - spot[1]
    u = dx * math.cos(turn) + dy * math.sin(turn)
    v = -dx * math.sin(turn) + dy * math.cos(turn)
    profile = np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    strength = float(rng.uniform(0.5, 0.9)) * 255
    return frame + (strength * profile)[:, :, None]


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel: the camera or the hand moved ``length`` px during the exposure."""
    size = math.ceil(length) | 1
    size += 2
    kernel = np.zeros((size * 8, size * 8), np.float32)
    centre = size * 4
    dx = math.cos(math.radians(angle)) * length * 4
    dy = math.sin(math.radians(angle)) * length * 4
    cv2.line(kernel, (int(centre - dx), int(centre - dy)), (int(centre + dx), int(centre + dy)), 1.0, 8)
    kernel = cv2.resize(kernel, (size, size), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()
