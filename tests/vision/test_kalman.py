"""Behaviour of the constant-velocity box filter."""

from __future__ import annotations

import numpy as np
import pytest

from agent.vision.kalman import BoxKalmanFilter, boxes_to_measurements, states_to_boxes


def moving_box(t: int, velocity: tuple[float, float] = (6.0, 2.5)) -> np.ndarray:
    vx, vy = velocity
    return np.array([[100 + vx * t, 80 + vy * t, 150 + vx * t, 200 + vy * t]], dtype=np.float64)


def test_boxes_survive_conversion_to_measurements_and_back() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [300.5, 7.25, 333.0, 90.0]])
    measurements = boxes_to_measurements(boxes)
    np.testing.assert_allclose(measurements[0], [30.0, 70.0, 0.4, 100.0])
    np.testing.assert_allclose(states_to_boxes(measurements), boxes)


def test_constant_velocity_box_is_predicted_exactly_after_warm_up() -> None:
    kf = BoxKalmanFilter()
    means, covs = kf.initiate(boxes_to_measurements(moving_box(0)))
    for t in range(1, 80):
        means, covs = kf.predict(means, covs)
        means, covs = kf.update(means, covs, boxes_to_measurements(moving_box(t)))
    for ahead in range(80, 83):
        means, covs = kf.predict(means, covs)
        np.testing.assert_allclose(states_to_boxes(means), moving_box(ahead), atol=1e-3)
    np.testing.assert_allclose(means[0, 4:6], [6.0, 2.5], atol=1e-4)


def test_first_prediction_stays_put_because_velocity_is_unknown() -> None:
    kf = BoxKalmanFilter()
    means, covs = kf.initiate(boxes_to_measurements(moving_box(0)))
    means, _ = kf.predict(means, covs)
    np.testing.assert_allclose(states_to_boxes(means), moving_box(0))


def test_uncertainty_grows_while_unobserved_and_shrinks_when_measured() -> None:
    kf = BoxKalmanFilter()
    means, covs = kf.initiate(boxes_to_measurements(moving_box(0)))
    before = np.trace(covs[0])
    predicted_means, predicted_covs = kf.predict(means, covs)
    assert np.trace(predicted_covs[0]) > before
    _, updated_covs = kf.update(predicted_means, predicted_covs, boxes_to_measurements(moving_box(1)))
    assert np.trace(updated_covs[0]) < np.trace(predicted_covs[0])
    np.testing.assert_allclose(updated_covs[0], updated_covs[0].T, atol=1e-9)


def test_update_moves_the_state_towards_the_measurement() -> None:
    kf = BoxKalmanFilter()
    means, covs = kf.initiate(boxes_to_measurements(moving_box(0)))
    means, covs = kf.predict(means, covs)
    measured = boxes_to_measurements(moving_box(3))
    updated, _ = kf.update(means, covs, measured)
    assert means[0, 0] < updated[0, 0] < measured[0, 0]
    assert means[0, 1] < updated[0, 1] < measured[0, 1]


def test_noise_scales_with_box_height() -> None:
    kf = BoxKalmanFilter()
    small = np.array([[0.0, 0.0, 20.0, 50.0]])
    large = np.array([[0.0, 0.0, 80.0, 200.0]])
    _, covs = kf.predict(*kf.initiate(boxes_to_measurements(np.concatenate([small, large]))))
    # Position variance grows with the square of the height: 4x taller, 16x the variance.
    assert covs[1, 0, 0] == pytest.approx(16 * covs[0, 0, 0])


def test_batched_rows_are_filtered_independently() -> None:
    kf = BoxKalmanFilter()
    a = moving_box(0)
    b = np.array([[400.0, 300.0, 460.0, 450.0]])
    both_means, both_covs = kf.initiate(boxes_to_measurements(np.concatenate([a, b])))
    one_means, one_covs = kf.initiate(boxes_to_measurements(a))
    for t in range(1, 6):
        both_means, both_covs = kf.predict(both_means, both_covs)
        one_means, one_covs = kf.predict(one_means, one_covs)
        shifted_b = b + np.array([-4.0 * t, 0.0, -4.0 * t, 0.0])
        both_means, both_covs = kf.update(
            both_means, both_covs, boxes_to_measurements(np.concatenate([moving_box(t), shifted_b]))
        )
        one_means, one_covs = kf.update(one_means, one_covs, boxes_to_measurements(moving_box(t)))
    np.testing.assert_allclose(both_means[0], one_means[0])
    np.testing.assert_allclose(both_covs[0], one_covs[0])


@pytest.mark.parametrize(("position", "velocity"), [(0.0, 0.1), (0.05, -1.0)])
def test_noise_weights_must_be_positive(position: float, velocity: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        BoxKalmanFilter(position_weight=position, velocity_weight=velocity)
