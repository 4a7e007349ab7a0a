"""Person detections of one frame: one array per field."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Detections:
    """Boxes in pixel coordinates of the source frame, with their scores.

    ``xyxy`` has shape (N, 4) as x1, y1, x2, y2; ``scores`` has shape (N,).
    """

    xyxy: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        if self.scores.shape != (self.xyxy.shape[0],):
            raise ValueError(f"scores must have shape ({self.xyxy.shape[0]},), got {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
