"""Scoring counts against a hand-made truth file (``retail-agent eval``).

``truth`` reads the file, ``matching`` pairs predicted crossings with true ones in time, ``scores``
turns a run into figures; this module runs the clip and joins them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agent.config import AgentConfig
from agent.evaluation.scores import EvalResult, FrameRange, PredictedCrossing, score
from agent.evaluation.truth import Truth, load_truth
from agent.vision.count import CountReport, count_video, file_source
from agent.vision.pipeline import FrameResult, build_pipeline

DEFAULT_TOLERANCE = 10  # frames: one second at the sample clip's 10 fps

__all__ = ["DEFAULT_TOLERANCE", "EvalResult", "FrameRange", "evaluate", "evaluate_file", "load_truth"]


def evaluate(
    truth: Truth,
    report: CountReport,
    crossings: Sequence[PredictedCrossing] | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
    ranges: Sequence[FrameRange] = (),
) -> EvalResult:
    """Score one run (its totals, zone counts and, when given, its crossings with their frames)."""
    whole, sections = score(truth, report.lines, report.zone_frames, crossings, tolerance, ranges)
    return EvalResult(report.model_name, report.frames, report.seconds, tolerance, whole, sections)


def evaluate_file(
    config: AgentConfig,
    truth_path: Path,
    video: Path,
    model: str | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
    ranges: Sequence[FrameRange] = (),
) -> EvalResult:
    """``retail-agent eval``: count ``video`` on the truth file's lines and zones, and score the run."""
    truth = load_truth(truth_path)
    camera = config.camera.model_copy(update={"lines": truth.line_configs(), "zones": truth.zone_configs()})
    pipeline = build_pipeline(config.model_copy(update={"camera": camera}), model)
    crossings: list[PredictedCrossing] = []
    last_frame = 0

    def collect(result: FrameResult) -> None:
        nonlocal last_frame
        # The end of the stream (index -1) reports what was still open at the last frame.
        last_frame = result.index if result.index >= 0 else last_frame
        crossings.extend(PredictedCrossing(last_frame, c.line, c.direction) for c in result.crossings)

    report = count_video(file_source(video), pipeline, on_result=collect)
    return evaluate(truth, report, crossings, tolerance, ranges)
