"""Exclusion masks: image regions where detections are dropped before tracking."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from agent.counting.geometry import Point, point_in_polygon
from agent.vision.detections import Detections

logger = logging.getLogger(__name__)


def drop_masked(detections: Detections, masks: Sequence[Sequence[Point]]) -> Detections:
    """The detections whose foot point (bottom-centre of the box) lies in none of the mask polygons."""
    if not masks or len(detections) == 0:
        return detections
    boxes = detections.xyxy
    keep = np.ones(len(detections), dtype=bool)
    for i in range(len(detections)):
        foot = Point(float(boxes[i, 0] + boxes[i, 2]) / 2.0, float(boxes[i, 3]))
        keep[i] = not any(point_in_polygon(foot, mask) for mask in masks)
    if keep.all():
        return detections
    return Detections(detections.xyxy[keep], detections.scores[keep])
