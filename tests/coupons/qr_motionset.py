"""Seeded frames of signed coupons shown on a moving phone or card: hand-held motion blur and more.

Harder than qr_testset.py: the coupon (a real C1 token, signed with a seeded Ed25519 key and
rendered by segno at error correction M) moves while the camera's shutter is open, so the card
is smeared along a line 15-40 px long at any angle while the counter behind it stays sharp. Each
sample belongs to one named category:

- ``motion``: motion blur only.
- ``motion_perspective``: blur of a card tilted 15-40 degrees towards the camera.
- ``motion_glare``: blur plus a lamp's highlight on the glossy surface.
- ``motion_low_contrast``: blur of a faded print or a dimmed screen.
- ``motion_noise``: blur plus strong sensor noise (a dim store).
- ``combined``: blur with perspective and two of glare, low contrast and noise, then JPEG.

A showing (``make_showing``) is 1 s of a code held towards the camera at 10 fps: ten frames of the
same coupon drifting across the view, each with its own blur length and direction.

    samples = make_motionset(300)   # sample i has category CATEGORIES[i % 6]
    showing = make_showing(0)       # ten frames
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import qr_testset
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.coupons.token import Coupon, issue_token

DEFAULT_SEED = 20261204
CATEGORIES = (
    "motion",
    "motion_perspective",
    "motion_glare",
    "motion_low_contrast",
    "motion_noise",
    "combined",
)
BLUR_PX = (15.0, 40.0)
"""Length of the motion blur in frame pixels: a phone moved 0.5-1.3 m/s at 1/30 s exposure."""
SHOWING_FRAMES = 10
NOW = 1_750_000_000
ISSUER_KEY_ID = 9


@dataclass(frozen=True)
class MotionSample:
    """One frame, the token it shows, its category and the blur applied."""

    index: int
    image: np.ndarray  # BGR uint8
    text: str
    category: str
    blur_px: float
    blur_angle: float  # degrees
    module_px: float


def issuer_key(seed: int = DEFAULT_SEED) -> Ed25519PrivateKey:
    """The seeded issuer key that signs every token of the set."""
    rng = np.random.default_rng((seed, 0xC0))
    return Ed25519PrivateKey.from_private_bytes(rng.bytes(32))


def issuer_public(seed: int = DEFAULT_SEED) -> bytes:
    """The raw public key verifying the set's tokens (key id ISSUER_KEY_ID)."""
    public = issuer_key(seed).public_key()
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def coupon_token(rng: np.random.Generator, key: Ed25519PrivateKey) -> str:
    """A signed token for a coupon with a random serial, campaign and offer."""
    coupon = Coupon(
        version=1,
        key_id=ISSUER_KEY_ID,
        campaign=int(rng.integers(1, 10_000)),
        serial=rng.bytes(16),
        not_before=NOW - 86_400,
        expires=NOW + 30 * 86_400,
        offer=int(rng.integers(1, 500)),
        store=0,
    )
    return issue_token(coupon, key)


def make_motionset(count: int = 300, seed: int = DEFAULT_SEED) -> list[MotionSample]:
    """``count`` samples; sample i is the same whatever the count."""
    key = issuer_key(seed)
    return [make_sample(index, seed, key) for index in range(count)]


def make_sample(index: int, seed: int = DEFAULT_SEED, key: Ed25519PrivateKey | None = None) -> MotionSample:
    """The sample at ``index``: category CATEGORIES[index % 6]."""
    rng = np.random.default_rng((seed, index))
    category = CATEGORIES[index % len(CATEGORIES)]
    text = coupon_token(rng, key or issuer_key(seed))
    return _render(index, text, category, rng, _Pose.random(rng, category))


def make_showing(index: int, seed: int = DEFAULT_SEED, key: Ed25519PrivateKey | None = None) -> list[MotionSample]:
    """Ten frames (1 s at 10 fps) of one coupon moving in front of the camera."""
    rng = np.random.default_rng((seed, 1_000_000 + index))
    category = CATEGORIES[index % len(CATEGORIES)]
    text = coupon_token(rng, key or issuer_key(seed))
    pose = _Pose.random(rng, category)
    frames = []
    for frame in range(SHOWING_FRAMES):
        # the hand drifts and turns a little; the smear changes with its speed and direction
        pose = pose.moved(rng)
        frame_rng = np.random.default_rng((seed, 1_000_000 + index, frame))
        frames.append(_render(index * SHOWING_FRAMES + frame, text, category, frame_rng, pose))
    return frames


@dataclass(frozen=True)
class _Pose:
    """Where the coupon is and how it is seen; the scene and degradations of its frames."""

    width: int
    height: int
    module_px: float
    angle: float
    tilt: float
    tilt_axis: float
    blur_px: float
    blur_angle: float
    centre: tuple[float, float]  # where the code's centre lies, as fractions of the frame
    medium: str
    low_contrast: bool
    glare: bool
    noise_sigma: float
    jpeg: int | None
    scene: int

    @staticmethod
    def random(rng: np.random.Generator, category: str) -> _Pose:
        width, height = qr_testset.SIZES[int(rng.integers(len(qr_testset.SIZES)))]
        combined = category == "combined"
        extras = set(rng.choice(["motion_glare", "motion_low_contrast", "motion_noise"], 2, replace=False))
        has = {category} | (extras | {"motion_perspective"} if combined else set())
        perspective = "motion_perspective" in has
        return _Pose(
            width=width,
            height=height,
            module_px=float(rng.uniform(3.5, 6.5)) * (height / 480) ** 0.5,
            angle=float(rng.uniform(-180, 180)),
            tilt=float(rng.uniform(15, 40)) if perspective else float(rng.uniform(0, 8)),
            tilt_axis=float(rng.uniform(0, 2 * math.pi)),
            blur_px=float(rng.uniform(*BLUR_PX)),
            blur_angle=float(rng.uniform(0, 180)),
            centre=(float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65))),
            medium="phone" if rng.random() < 0.5 else "paper",
            low_contrast="motion_low_contrast" in has,
            glare="motion_glare" in has,
            noise_sigma=float(rng.uniform(5, 10)) if "motion_noise" in has else float(rng.uniform(0.5, 2.0)),
            jpeg=int(rng.integers(50, 86)) if combined else None,
            scene=int(rng.integers(1 << 30)),
        )

    def moved(self, rng: np.random.Generator) -> _Pose:
        cx, cy = self.centre
        turn = math.radians(self.blur_angle)
        step = 0.004 * self.blur_px
        return _Pose(
            **{
                **self.__dict__,
                "angle": self.angle + float(rng.normal(0, 3)),
                "blur_px": float(np.clip(self.blur_px + rng.normal(0, 6), *BLUR_PX)),
                "blur_angle": (self.blur_angle + float(rng.normal(0, 15))) % 180,
                "centre": (
                    float(np.clip(cx + step * math.cos(turn) * rng.choice([-1, 1]), 0.3, 0.7)),
                    float(np.clip(cy + step * math.sin(turn) * rng.choice([-1, 1]), 0.3, 0.7)),
                ),
            }
        )


def _render(index: int, text: str, category: str, rng: np.random.Generator, pose: _Pose) -> MotionSample:
    width, height = pose.width, pose.height
    card, code_box = qr_testset._card(qr_testset.qr_matrix(text), pose.medium, False, pose.low_contrast, rng)
    scene = qr_testset.background(width, height, np.random.default_rng(pose.scene))
    homography = qr_testset._placement(
        card.shape, code_box, pose.module_px, pose.angle, pose.tilt, pose.tilt_axis, width, height, rng
    )
    homography = _recentre(homography, code_box, pose.centre, width, height)
    size = (width, height)
    soft = cv2.GaussianBlur(card, (0, 0), 0.45 * qr_testset._RENDER_PX / pose.module_px)
    mask = cv2.warpPerspective(np.ones(card.shape[:2], np.float32), homography, size, flags=cv2.INTER_LINEAR)
    layer = cv2.warpPerspective(soft, homography, size, flags=cv2.INTER_LINEAR) * mask[:, :, None]
    kernel = qr_testset._motion_kernel(pose.blur_px, pose.blur_angle)
    layer = cv2.filter2D(layer, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    mask = cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    frame = scene * (1 - mask[:, :, None]) + layer
    frame *= qr_testset._illumination(width, height, rng)
    if pose.glare:
        frame = qr_testset._glare(frame, homography, code_box, rng)
    frame += pose.noise_sigma * rng.standard_normal(frame.shape, dtype=np.float32)
    image = np.clip(frame, 0, 255).astype(np.uint8)
    if pose.jpeg is not None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, pose.jpeg])
        assert ok
        image = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return MotionSample(index, image, text, category, pose.blur_px, pose.blur_angle, pose.module_px)


def _recentre(
    homography: np.ndarray, code_box: tuple[float, float, float, float], centre: tuple[float, float], w: int, h: int
) -> np.ndarray:
    """The homography shifted so that the code's centre lands near ``centre`` (fractions of the
    frame), moved as little as needed to keep the whole code and its smear inside the frame."""
    bx, by, bw, bh = code_box
    points = np.array(
        [[[bx + bw / 2, by + bh / 2]], [[bx, by]], [[bx + bw, by]], [[bx + bw, by + bh]], [[bx, by + bh]]]
    )
    placed = cv2.perspectiveTransform(points.astype(np.float32), homography)[:, 0]
    middle, corners = placed[0], placed[1:]
    dx, dy = centre[0] * w - middle[0], centre[1] * h - middle[1]
    margin = BLUR_PX[1] / 2 + 2
    low, high = corners.min(axis=0), corners.max(axis=0)
    dx = float(np.clip(dx, margin - low[0], w - margin - high[0]))
    dy = float(np.clip(dy, margin - low[1], h - margin - high[1]))
    shift = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]])
    return shift @ homography
