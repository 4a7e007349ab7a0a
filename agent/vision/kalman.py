"""Constant-velocity Kalman filter for person boxes, batched over tracks.

The state of one box is ``(cx, cy, a, h, vcx, vcy, va, vh)``: centre, aspect ratio (width / height),
height and their velocities per frame. Only the first four are measured. Process and measurement
noise scale with the box height, so a near person (large box) may move more pixels per frame than
a far one; the aspect ratio gets small fixed noise because a walking person's outline changes
little. Every method works on a batch: ``means`` (N, 8) and ``covariances`` (N, 8, 8).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

STATE_SIZE = 8
MEASUREMENT_SIZE = 4

# One frame of constant-velocity motion: position += velocity.
_MOTION = np.eye(STATE_SIZE)
_MOTION[:MEASUREMENT_SIZE, MEASUREMENT_SIZE:] = np.eye(MEASUREMENT_SIZE)

# Fixed variances of the aspect ratio, from standard deviations 1e-2 (value), 1e-5 (velocity), and
# 1e-1 (measured); zero for the entries whose noise scales with the height.
_ASPECT_STATE_VARIANCE = np.array([0, 0, 1e-2**2, 0, 0, 0, 1e-5**2, 0], dtype=np.float64)
_ASPECT_MEASUREMENT_VARIANCE = np.array([0, 0, 1e-1**2, 0], dtype=np.float64)
_STATE_DIAGONAL = np.arange(STATE_SIZE)
_MEASUREMENT_DIAGONAL = np.arange(MEASUREMENT_SIZE)


def boxes_to_measurements(xyxy: npt.ArrayLike) -> FloatArray:
    """Convert (N, 4) corner boxes to (N, 4) ``(cx, cy, a, h)`` measurements."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    out = np.empty_like(boxes)
    out[:, 0] = boxes[:, 0] + 0.5 * width
    out[:, 1] = boxes[:, 1] + 0.5 * height
    out[:, 2] = width / height
    out[:, 3] = height
    return out


def states_to_boxes(states: FloatArray) -> FloatArray:
    """Convert (N, >=4) ``(cx, cy, a, h, ...)`` rows to (N, 4) corner boxes."""
    height = states[:, 3]
    half_w = 0.5 * states[:, 2] * height
    half_h = 0.5 * height
    out = np.empty((states.shape[0], 4), dtype=np.float64)
    out[:, 0] = states[:, 0] - half_w
    out[:, 1] = states[:, 1] - half_h
    out[:, 2] = states[:, 0] + half_w
    out[:, 3] = states[:, 1] + half_h
    return out


@dataclass(frozen=True)
class BoxKalmanFilter:
    """Kalman filter over box states; noise standard deviations are these weights times the height.

    The defaults (1/20 for position, 1/160 for velocity) suit people filmed at 10-30 frames per
    second.
    """

    position_weight: float = 1.0 / 20.0
    velocity_weight: float = 1.0 / 160.0

    def __post_init__(self) -> None:
        if self.position_weight <= 0 or self.velocity_weight <= 0:
            raise ValueError("noise weights must be positive")

    def initiate(self, measurements: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Start states at (N, 4) measurements with zero velocity and wide uncertainty."""
        n = measurements.shape[0]
        means = np.zeros((n, STATE_SIZE), dtype=np.float64)
        means[:, :MEASUREMENT_SIZE] = measurements
        pos = 2.0 * self.position_weight
        vel = 10.0 * self.velocity_weight
        covariances = np.zeros((n, STATE_SIZE, STATE_SIZE), dtype=np.float64)
        covariances[:, _STATE_DIAGONAL, _STATE_DIAGONAL] = _variances(
            measurements[:, 3], [pos, pos, 0.0, pos, vel, vel, 0.0, vel], _ASPECT_STATE_VARIANCE
        )
        return means, covariances

    def predict(self, means: FloatArray, covariances: FloatArray, steps: float = 1.0) -> tuple[FloatArray, FloatArray]:
        """Advance every state by ``steps`` frames (a fraction or several when frames come late or are dropped).

        Velocities are per frame; the process noise grows in proportion to ``steps``, as for a random walk.
        """
        pos = self.position_weight
        vel = self.velocity_weight
        motion = _MOTION
        if steps != 1.0:
            motion = np.eye(STATE_SIZE)
            motion[:MEASUREMENT_SIZE, MEASUREMENT_SIZE:] = steps * np.eye(MEASUREMENT_SIZE)
        new_means = means @ motion.T
        new_cov = motion @ covariances @ motion.T
        new_cov[:, _STATE_DIAGONAL, _STATE_DIAGONAL] += steps * _variances(
            means[:, 3], [pos, pos, 0.0, pos, vel, vel, 0.0, vel], _ASPECT_STATE_VARIANCE
        )
        return new_means, new_cov

    def update(
        self, means: FloatArray, covariances: FloatArray, measurements: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Correct N predicted states with their N measurements."""
        m = MEASUREMENT_SIZE
        pos = self.position_weight
        innovation_cov = covariances[:, :m, :m].copy()
        innovation_cov[:, _MEASUREMENT_DIAGONAL, _MEASUREMENT_DIAGONAL] += _variances(
            means[:, 3], [pos, pos, 0.0, pos], _ASPECT_MEASUREMENT_VARIANCE
        )
        cross = covariances[:, :, :m]  # P H^T, shape (N, 8, 4)
        # Kalman gain K = P H^T S^-1; S is symmetric, so K^T = solve(S, (P H^T)^T).
        gain = np.linalg.solve(innovation_cov, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
        residual = measurements - means[:, :m]
        new_means = means + (gain @ residual[:, :, None])[:, :, 0]
        new_cov = covariances - gain @ innovation_cov @ gain.transpose(0, 2, 1)
        return new_means, new_cov


def _variances(height: FloatArray, weights: list[float], fixed: FloatArray) -> FloatArray:
    """(N, k) variances: (weight * height)^2 per entry, plus the fixed variances."""
    w = np.asarray(weights, dtype=np.float64)
    out: FloatArray = np.outer(height * height, w * w) + fixed
    return out
