"""Deblurring: a coupon smeared by a known linear motion is measured, restored and read; forged or
foreign codes restored the same way are still refused."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import zxingcpp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.coupons import deblur
from agent.coupons.scanner import DEBLUR_MIN_EDGE_DENSITY, DEBLUR_MIN_STREAK_SCORE, LiveReader, QrScanner
from agent.coupons.token import Coupon, VerifyResult, issue_token, verify_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
import qr_motionset
import qr_testset

NOW = 1_750_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PUBLIC = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
SMEAR = deblur.Blur(length=26.0, angle=35.0)


def _token(key: Ed25519PrivateKey = KEY) -> str:
    coupon = Coupon(
        version=1,
        key_id=4,
        campaign=77,
        serial=bytes(range(16, 32)),
        not_before=NOW - 3600,
        expires=NOW + 86400,
        offer=3,
        store=0,
    )
    return issue_token(coupon, key)


def _smeared(
    text: str,
    blur: deblur.Blur = SMEAR,
    module_px: int = 6,
    at: tuple[int, int] = (150, 80),
    seed: int = 8,
    noise_sigma: float = 1.0,
) -> np.ndarray:
    """A gray 640x480 counter scene with the code (top left at ``at``, x then y) moved ``blur``
    while the shutter was open, plus sensor noise of ``noise_sigma`` grey levels."""
    frame = cv2.cvtColor(qr_testset.empty_frame(640, 480, seed=3), cv2.COLOR_BGR2GRAY).astype(np.float32)
    code = qr_testset.render_code(text, module_px=module_px).astype(np.float32)
    x, y = at
    layer = np.zeros_like(frame)
    mask = np.zeros_like(frame)
    layer[y : y + code.shape[0], x : x + code.shape[1]] = code
    mask[y : y + code.shape[0], x : x + code.shape[1]] = 1
    kernel = deblur.line_kernel(blur)
    layer = cv2.filter2D(layer, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    mask = cv2.filter2D(mask, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    noise = np.random.default_rng(seed).normal(0, noise_sigma, frame.shape).astype(np.float32)
    return np.clip(frame * (1 - mask) + layer + noise, 0, 255).astype(np.uint8)


def _plain(image: np.ndarray) -> list[str]:
    return [barcode.text for barcode in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]


def test_the_smear_is_measured_from_the_cepstrum() -> None:
    frame = _smeared(_token())
    x, y, side, _ = deblur.code_region(frame)
    blur = deblur.estimate_blurs(frame[y : y + side, x : x + side])[0]
    assert blur.length == pytest.approx(SMEAR.length, abs=2.0)
    assert blur.angle == pytest.approx(SMEAR.angle, abs=5.0)


def test_the_code_region_holds_the_smeared_code() -> None:
    frame = _smeared(_token())
    x, y, side, density = deblur.code_region(frame)
    assert x <= 150 + 20 and y <= 80 + 20  # the code starts at (150, 80)
    assert x + side >= 150 + 300 and y + side >= 80 + 300
    assert density > 0.5


def test_the_streak_score_finds_a_faint_smeared_code_the_edge_density_misses() -> None:
    sample = qr_motionset.make_sample(81)  # a faded print moved while shown
    assert sample.category == "motion_low_contrast"
    frame = cv2.cvtColor(sample.image, cv2.COLOR_BGR2GRAY)
    assert deblur.code_region(frame)[3] < DEBLUR_MIN_EDGE_DENSITY
    score = deblur.streak_region(frame)[3]
    assert score >= DEBLUR_MIN_STREAK_SCORE
    for seed in range(5):  # a counter without a code: text and shapes turn every way
        empty = cv2.cvtColor(qr_testset.empty_frame(640, 480, seed=seed), cv2.COLOR_BGR2GRAY)
        assert deblur.streak_region(empty)[3] < DEBLUR_MIN_STREAK_SCORE


def test_a_faint_smeared_coupon_below_the_edge_density_is_deblurred_and_read() -> None:
    sample = qr_motionset.make_sample(81)
    result = QrScanner(budget_ms=None, deblur_budget_ms=1000).scan(sample.image)
    assert "deblur" in result.attempts
    assert sample.text in result.codes


def test_normalising_the_contrast_gives_a_faint_and_a_strong_pattern_the_same_spread() -> None:
    stripes = np.tile((np.arange(256) // 4 % 2).astype(np.float32), (256, 1))  # 4 px stripes
    faint = 120 + 30 * stripes  # a faded print: 30 grey levels
    strong = 20 + 200 * stripes  # the counter beside it: 200
    frame = np.hstack([faint, strong]).astype(np.uint8)
    normalised = deblur.normalise_contrast(frame)
    assert normalised.dtype == np.uint8 and normalised.shape == frame.shape
    left, right = normalised[64:192, 32:96].astype(np.float32), normalised[64:192, 416:480].astype(np.float32)
    assert left.mean() == pytest.approx(128, abs=8) and right.mean() == pytest.approx(128, abs=8)
    assert left.std() > 30 and right.std() > 30
    assert left.std() == pytest.approx(right.std(), rel=0.25)


def test_deblurring_reads_a_smeared_coupon_that_plain_decoding_misses() -> None:
    token = _token()
    frame = _smeared(token)
    assert _plain(frame) == []
    assert QrScanner(budget_ms=None, deblur_budget_ms=0).scan(frame).codes == ()
    result = QrScanner(budget_ms=None, deblur_budget_ms=1000).scan(frame)
    assert result.codes == (token,)
    assert result.attempts[-1] == "deblur"
    assert verify_token(result.codes[0], {4: PUBLIC}, store=0, revoked=(), now=NOW).result is VerifyResult.VALID


def test_a_forged_coupon_restored_by_deblurring_is_refused() -> None:
    forger = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
    forged = _token(forger)
    codes = QrScanner(budget_ms=None, deblur_budget_ms=1000).scan(_smeared(forged)).codes
    assert codes == (forged,)
    assert verify_token(codes[0], {4: PUBLIC}, store=0, revoked=(), now=NOW).result is VerifyResult.BAD_SIGNATURE


def test_a_foreign_code_restored_by_deblurring_is_refused() -> None:
    text = "HTTPS://SHOP.EXAMPLE/LOYALTY/" + "0123456789" * 12  # same size of symbol as a token
    codes = QrScanner(budget_ms=None, deblur_budget_ms=1000).scan(_smeared(text)).codes
    assert codes == (text,)
    assert verify_token(codes[0], {4: PUBLIC}, store=0, revoked=(), now=NOW).result is VerifyResult.MALFORMED


def test_the_deblur_pass_stops_at_its_budget() -> None:
    frame = np.random.default_rng(2).integers(0, 256, (480, 640), dtype=np.uint8)  # edges everywhere
    budget_ms = 5.0
    result = QrScanner(budget_ms=None, deblur_budget_ms=budget_ms).scan(frame)
    assert result.codes == ()
    assert "deblur" in result.attempts
    started = QrScanner(budget_ms=None, deblur_budget_ms=0).scan(frame).ms
    assert result.ms - started < 1000  # one restoration may overrun; never all of them


def test_a_negative_deblur_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="deblur_budget_ms"):
        QrScanner(deblur_budget_ms=-1)


def test_a_smeared_frame_is_less_sharp_than_a_still_one() -> None:
    token = _token()
    still = _smeared(token, deblur.Blur(length=1.0, angle=0.0))
    assert deblur.sharpness(still) > 2 * deblur.sharpness(_smeared(token))


def test_the_motion_set_is_the_same_for_the_same_seed_and_signed() -> None:
    first, again = qr_motionset.make_sample(7), qr_motionset.make_sample(7)
    assert np.array_equal(first.image, again.image) and first.text == again.text
    assert first.category == qr_motionset.CATEGORIES[7 % len(qr_motionset.CATEGORIES)]
    assert qr_motionset.BLUR_PX[0] <= first.blur_px <= qr_motionset.BLUR_PX[1]
    keys = {qr_motionset.ISSUER_KEY_ID: qr_motionset.issuer_public()}
    assert verify_token(first.text, keys, store=0, revoked=(), now=qr_motionset.NOW).result is VerifyResult.VALID


def test_a_live_reader_restores_the_sharper_of_two_unread_frames() -> None:
    token = _token()
    frames = [_smeared(token, deblur.Blur(length=70.0, angle=35.0)), _smeared(token)]
    assert QrScanner(deblur_budget_ms=1000).restore(frames[0]).codes == ()  # too smeared to restore
    reader = LiveReader(QrScanner(deblur_budget_ms=1000), deblur_every=2)
    assert reader.read(frames[0]) == []  # the window is not full yet: nothing restored
    assert reader.read(frames[1]) == [token]  # the 26 px smear is the sharper one
    assert reader.read(frames[1]) == [token]  # after a read, the next unread frame is restored at once
    plain = LiveReader(QrScanner(deblur_budget_ms=0), deblur_every=2)
    assert [plain.read(frame) for frame in frames] == [[], []]


def _with_sharp_bars(frame: np.ndarray) -> np.ndarray:
    """The smeared frame with a sharp barcode-like label beside the code: bars across the motion."""
    labelled = frame.copy()
    for column in range(20, 140, 6):
        labelled[250:330, column : column + 3] = 20
        labelled[250:330, column + 3 : column + 6] = 235
    return labelled


def test_isolating_keeps_the_smear_and_fades_a_sharp_label_beside_it() -> None:
    frame = _with_sharp_bars(_smeared(_token(), deblur.Blur(length=26.0, angle=0.0)))
    crop = frame[:480, :480]
    faded, (x, y, width, height) = deblur.isolate(crop, deblur.Blur(length=26.0, angle=0.0))
    label, code = (slice(250, 330), slice(30, 130)), (slice(150, 300), slice(250, 380))
    assert crop[label].std() > 80
    assert faded[label].std() < 0.2 * float(crop[label].std())  # the label's bars would ring across the code
    assert faded[code].std() > 0.9 * float(crop[code].std())
    assert x <= 150 and y <= 80 and x + width >= 450 - 26 and y + height >= 380  # the box holds the code


def test_a_blur_is_measured_within_a_pixel_or_two_on_the_faded_crop() -> None:
    for blur in (deblur.Blur(18.0, 0.0), deblur.Blur(30.0, 120.0), deblur.Blur(38.0, 75.0)):
        frame = _smeared(_token(), blur)
        x, y, side, _ = deblur.code_region(frame)
        crop = frame[y : y + side, x : x + side]
        faded, _ = deblur.isolate(crop, deblur.estimate_blurs(crop)[0])
        measured = deblur.estimate_blurs(faded, count=1)[0]
        assert measured.length + deblur.LENGTH_BIAS_PX == pytest.approx(blur.length, abs=2.0)
        turn = abs(measured.angle - blur.angle) % 180
        assert min(turn, 180 - turn) <= 4.0


def test_the_first_restorations_are_of_the_reduced_crop_and_read_the_coupon() -> None:
    token = _token()
    frame = _smeared(token)
    x, y, side, _ = deblur.code_region(frame)
    candidates = deblur.deblur_candidates(frame, (x, y, side))
    reduced = [next(candidates) for _ in range(3)]  # the first estimate, then 1.5 px shorter and longer
    assert all(max(image.shape) <= side // 2 for image in reduced)
    assert max(next(candidates).shape) > side // 2  # then the full-size restorations
    enlarged = [cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR) for image in reduced]
    assert token in _plain(enlarged[0]) + _plain(enlarged[1]) + _plain(enlarged[2])


def test_wiener_restores_once_per_kernel_and_noise_ratio() -> None:
    crop = _smeared(_token())[:256, :256]
    kernels = [deblur.line_kernel(deblur.Blur(length, 35.0)) for length in (20.0, 26.0)]
    restored = list(deblur.wiener(crop.astype(np.float32), kernels, (0.002, 0.01)))
    assert len(restored) == 4
    assert all(image.shape == crop.shape and image.dtype == np.uint8 for image in restored)
    assert not np.array_equal(restored[0], restored[2])  # another kernel, another restoration


def test_levels_are_stretched_between_the_percentiles_and_clipped() -> None:
    image = np.tile(np.linspace(-100.0, 100.0, 200, dtype=np.float32), (200, 1))
    stretched = deblur._to_uint8(image)
    assert stretched[:, 0].max() == 0  # far below the 1st percentile: black, never folded back up
    assert stretched[:, -1].min() == 255
    assert 100 <= int(stretched[100, 100]) <= 155
